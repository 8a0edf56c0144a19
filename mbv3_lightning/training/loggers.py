"""The run's Lightning loggers: a CSV logger that survives resuming (the rows of earlier
attempts stay in metrics.csv), and the W&B run's identity across resumes and jobs."""

from __future__ import annotations

import csv
import logging
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from mbv3_lightning.models.safe_load import load_checkpoint
from mbv3_lightning.runs.run_dir import RunDir
from mbv3_lightning.runs.wandb_results import relative_paths

log = logging.getLogger(__name__)

WANDB_RUN_ID_KEY = "wandb_run_id"
WANDB_GROUP_KEY = "wandb_group"


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
    same W&B run instead of starting a new one with half the curves; and its group, so an
    evaluation of the checkpoint joins the group of the training run."""

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        logger = find_wandb_logger(trainer.loggers)
        if logger is not None:
            checkpoint[WANDB_RUN_ID_KEY] = logger.version  # the W&B run id
            checkpoint[WANDB_GROUP_KEY] = logger.experiment.group


def wandb_run_id_from_checkpoint(ckpt_path: str | Path, key: str = WANDB_RUN_ID_KEY) -> str | None:
    """The W&B run id (or with ``key=WANDB_GROUP_KEY`` the group) a checkpoint was saved
    under (``None`` for runs without W&B)."""
    # mmap: only the few bytes of the small entry are read, not the weights.
    value = load_checkpoint(ckpt_path, mmap=True).get(key)
    return value if isinstance(value, str) else None  # data, used as a name only


def wandb_resume_kwargs(ckpt_path: str | Path | None) -> dict[str, Any]:
    """``WandbLogger`` arguments that continue the checkpoint's W&B run, if it had one."""
    if ckpt_path is None or not Path(ckpt_path).is_file():
        return {}
    run_id = wandb_run_id_from_checkpoint(ckpt_path)
    if run_id is None:
        return {}
    log.info("Continuing W&B run %s from %s.", run_id, ckpt_path)
    return {"id": run_id, "resume": "allow"}


# The summary of each curve: its best value, not its last epoch.
_SUMMARY_MAX = ("acc", "auroc", "f1", "precision", "recall", "specificity", "acc_top5")


def _summary_kind(key: str) -> str | None:
    stage, _, name = key.partition("/")
    if stage not in ("train", "val") or not name:
        return None
    if name == "loss":
        return "min"
    return "max" if name in _SUMMARY_MAX or name == "acc_best" else None


class ProjectWandbLogger(WandbLogger):
    """Lightning's WandbLogger with the dashboard a user expects from this project.

    - each train/val curve's summary is its best value (max accuracy/AUROC, min loss);
    - test scores (one value each) go to the run summary, not to one-point charts (the run's
      results add them as one table, :func:`mbv3_lightning.runs.wandb_results.log_run_results`);
    - the run config is the resolved Hydra config alone (:meth:`log_config`): Lightning's own
      call with the module's hyper-parameters would repeat them at the top level;
    - ``log_model`` works offline too (the artifact is synced with the run);
    - no ``anonymous`` argument, which wandb deprecates and warns about even when unset.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("offline") and kwargs.get("log_model"):
            # Lightning refuses log_model with offline=True, yet W&B keeps artifacts of an
            # offline run and `wandb sync` uploads them later: run offline through W&B's own
            # `mode` instead.
            kwargs.update(offline=False, mode="offline")
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
        self._defined: set[str] = set()

    def _define(self, keys: Iterable[str]) -> None:
        run = self.experiment
        for key in keys:
            kind = _summary_kind(key)
            if kind is None or key in self._defined:
                continue
            run.define_metric(key, step_metric="trainer/global_step", summary=kind)
            self._defined.add(key)

    def log_hyperparams(self, params: Any) -> None:  # type: ignore[override]
        """Ignored: the config comes from :meth:`log_config`, once, as the Hydra config."""

    def log_config(self, config: dict[str, Any], run_dir: str | Path) -> None:
        """The resolved Hydra config, with absolute paths made relative to ``run_dir``."""
        if rank_zero_only.rank == 0:
            self.experiment.config.update(relative_paths(config, run_dir), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:  # type: ignore[override]
        if rank_zero_only.rank != 0:
            return
        tests = {k: v for k, v in metrics.items() if k.startswith("test/")}
        rest = {k: v for k, v in metrics.items() if k not in tests}
        if tests:
            self.experiment.summary.update({k: float(v) for k, v in tests.items()})
        if rest:
            self._define(rest)
            super().log_metrics(rest, step)
