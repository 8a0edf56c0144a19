"""The W&B side of Lightning: the project's WandbLogger (best-value summaries, the Hydra
config as the run config) and the run's identity across resumes and jobs (the run id and group
kept in every checkpoint)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, WandbLogger

from mbv3_lightning.models.safe_load import load_checkpoint
from mbv3_lightning.runs.environment import process_rank
from mbv3_lightning.tracking.results import relative_paths

log = logging.getLogger(__name__)

WANDB_RUN_ID_KEY = "wandb_run_id"
WANDB_GROUP_KEY = "wandb_group"


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
    - test scores (one value each) are no one-point charts: the run's results put them in
      the run summary (:func:`mbv3_lightning.tracking.results.log_run_results`);
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

    def log_hyperparams(self, params: Any) -> None:
        """Ignored: the config comes from :meth:`log_config`, once, as the Hydra config."""

    def log_config(self, config: dict[str, Any], run_dir: str | Path) -> None:
        """The resolved Hydra config, with absolute paths made relative to ``run_dir``."""
        if process_rank() == 0:
            self.experiment.config.update(relative_paths(config, run_dir), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if process_rank() != 0:
            return
        # Test scores go to the run summary once, with the run's results (log_run_results).
        rest = {k: v for k, v in metrics.items() if not k.startswith("test/")}
        if rest:
            self._define(rest)
            super().log_metrics(rest, step)
