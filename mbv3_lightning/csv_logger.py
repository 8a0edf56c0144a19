"""A CSV logger that survives resuming: the rows of earlier attempts stay in metrics.csv."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger deletes an existing metrics.csv when it starts; a resumed run
    (``ckpt_path=.../last.ckpt``) would lose the curves of its first epochs. This keeps them
    and appends, so ``metrics.csv`` always holds the run's whole history."""

    @property
    def experiment(self):  # type: ignore[override]
        if self._experiment is not None:
            return self._experiment
        path = Path(self.log_dir) / "metrics.csv"
        previous = path.read_text() if path.is_file() else ""
        experiment = super().experiment  # removes the old file
        if previous:
            path.write_text(previous)
            with path.open(newline="") as f:
                experiment.metrics_keys = next(csv.reader(f), [])
        return experiment
