"""The run's Lightning loggers: a CSV logger that survives resuming (the rows of earlier
attempts stay in metrics.csv), and the W&B run's identity across resumes and jobs."""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from mbv3_lightning.models.safe_load import load_checkpoint
from mbv3_lightning.runs.run_dir import RunDir

log = logging.getLogger(__name__)

WANDB_RUN_ID_KEY = "wandb_run_id"


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger deletes an existing metrics.csv when it starts; a resumed run
    (``ckpt_path=.../last.ckpt``) would lose the curves of its first epochs. This keeps them
    and appends, so ``metrics.csv`` always holds the run's whole history."""

    @property
    def experiment(self):  # type: ignore[override]
        if self._experiment is not None:
            return self._experiment
        path = RunDir(Path(self.log_dir)).metrics_csv
        previous = path.read_text() if path.is_file() else ""
        experiment = super().experiment  # removes the old file
        if previous:
            path.write_text(previous)
            with path.open(newline="") as f:
                experiment.metrics_keys = next(csv.reader(f), [])
        return experiment


def finish_wandb(failed: bool) -> None:
    """Close this job's W&B run, if any, so multirun jobs never log into each other."""
    wandb = sys.modules.get("wandb")  # only present if a WandbLogger was created
    if wandb is not None and wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


def find_wandb_logger(loggers: Iterable[Logger]) -> WandbLogger | None:
    """The run's WandbLogger, if W&B is on."""
    return next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)


class WandbRunIdInCheckpoint(Callback):
    """Stores the W&B run id in every checkpoint, so `ckpt_path=.../last.ckpt` continues the
    same W&B run instead of starting a new one with half the curves."""

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        logger = find_wandb_logger(trainer.loggers)
        if logger is not None:
            checkpoint[WANDB_RUN_ID_KEY] = logger.version  # the W&B run id


def wandb_run_id_from_checkpoint(ckpt_path: str | Path) -> str | None:
    """The W&B run id a checkpoint was saved under (``None`` for runs without W&B)."""
    # mmap: only the few bytes of the small entry are read, not the weights.
    checkpoint = load_checkpoint(ckpt_path, mmap=True)
    return checkpoint.get(WANDB_RUN_ID_KEY)


def wandb_resume_kwargs(ckpt_path: str | Path | None) -> dict[str, Any]:
    """``WandbLogger`` arguments that continue the checkpoint's W&B run, if it had one."""
    if ckpt_path is None or not Path(ckpt_path).is_file():
        return {}
    run_id = wandb_run_id_from_checkpoint(ckpt_path)
    if run_id is None:
        return {}
    log.info("Continuing W&B run %s from %s.", run_id, ckpt_path)
    return {"id": run_id, "resume": "allow"}
