"""Every path of a run directory, and the one way files get into it: atomically.

A reader (a resumed sweep, the report, a second process) must never see half a file, and a
file that exists must be complete; so each file is written under a temporary name in the same
folder and renamed into place. ``metrics.json`` is written last: its presence means the run is
complete (see :mod:`mbv3_lightning.runs.resume`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def write_atomic(path: Path, content: str | bytes | Callable[[Path], None]) -> None:
    """Write ``content`` (text, bytes, or a function that writes the file it is given) to
    ``path`` through a temporary file and a rename, so no reader sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The process id keeps concurrent writers apart; the name stays last, so a writer that
    # picks its format from the extension (matplotlib's .png) still sees it.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        if isinstance(content, str):
            tmp.write_text(content)
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any, indent: int | None = 2) -> None:
    """JSON through :func:`write_atomic`."""
    write_atomic(path, json.dumps(data, indent=indent))


@dataclass(frozen=True)
class RunDir:
    """The files one run (a training run, an evaluation, one sweep cell) keeps in its folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of_checkpoint(cls, ckpt_path: str | Path) -> RunDir:
        """The run a checkpoint belongs to: ``<run dir>/checkpoints/<name>.ckpt``."""
        return cls(Path(ckpt_path).resolve().parent.parent)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # results, written by runs/files.py (metrics.json last)
    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def curves_csv(self) -> Path:
        return self.path / "curves.csv"

    @property
    def curves_png(self) -> Path:
        return self.path / "curves.png"

    @property
    def per_class_csv(self) -> Path:
        return self.path / "per_class.csv"

    @property
    def per_class_epochs_csv(self) -> Path:
        return self.path / "per_class_epochs.csv"

    @property
    def epoch_confusions_json(self) -> Path:
        return self.path / "epoch_confusions.json"

    def confusion_png_of(self, stage: str) -> Path:
        """The best epoch's train or val confusion matrix (``confusion_train.png``)."""
        return self.path / f"confusion_{stage}.png"

    @property
    def roc_json(self) -> Path:
        return self.path / "roc.json"

    @property
    def roc_png(self) -> Path:
        return self.path / "roc.png"

    @property
    def confusion_png(self) -> Path:
        return self.path / "confusion.png"

    # written during the run: Lightning's CSV log and checkpoints, the DataModule's split lists
    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def split_manifest(self) -> Path:
        return self.path / "split_manifest.json"

    @property
    def class_indices(self) -> Path:
        return self.path / "class_indices.json"

    # a sweep cell's state, and Hydra's record of the composed config
    @property
    def status_json(self) -> Path:
        return self.path / "status.json"

    @property
    def traceback_txt(self) -> Path:
        return self.path / "traceback.txt"

    def earlier_traceback(self, attempt: int) -> Path:
        """Where a cell keeps the traceback of an earlier failed attempt."""
        return self.path / f"traceback.attempt{attempt}.txt"

    @property
    def hydra_dir(self) -> Path:
        return self.path / ".hydra"

    @property
    def overrides_yaml(self) -> Path:
        return self.hydra_dir / "overrides.yaml"

    def holds_finished_run(self) -> bool:
        return self.metrics_json.is_file()
