"""The run's CSV logger: Lightning's, surviving a resume (the rows of earlier attempts stay in
metrics.csv). W&B's logger is in :mod:`mbv3_lightning.tracking.logger`."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger

from mbv3_lightning.runs.run_dir import RunDir


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger deletes an existing metrics.csv when it starts; a resumed run
    (``ckpt_path=.../last.ckpt``) would lose the curves of its first epochs. This keeps them
    and appends, so ``metrics.csv`` always holds the run's whole history."""

    @property
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = RunDir(Path(self.log_dir)).metrics_csv
        previous = path.read_text() if path.is_file() else ""
        with warnings.catch_warnings():
            # "Experiment logs directory ... is not empty. Previous log files ... will be
            # deleted": the log directory is the run directory (config, split lists, ...), and
            # the one file it deletes, metrics.csv, is put back just below.
            warnings.filterwarnings("ignore", message="Experiment logs directory .* not empty")
            experiment = super().experiment  # removes the old file
        if previous:
            path.write_text(previous)
            with path.open(newline="") as f:
                experiment.metrics_keys = next(csv.reader(f), [])
        return experiment
