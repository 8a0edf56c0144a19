"""The W&B side of Lightning: the project's WandbLogger (the curves people compare in the
history, best values in the summary, the Hydra config as the run config) and the run's identity
across resumes and jobs (the run id and group kept in every checkpoint)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, WandbLogger

from mbv3_lightning.models.safe_load import load_checkpoint
from mbv3_lightning.runs.environment import process_rank
from mbv3_lightning.tracking.run_config import run_config

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

# The train/val scores charted per epoch: the curves people compare between runs. The other
# train/val scores (macro precision, recall, specificity, top-5 accuracy, val/acc_best) go to
# the run summary only, as their best value, so that the history stays a short list.
CHARTED_SCORES = ("loss", "acc", "auroc", "f1")

# The per-class scores of an epoch, as ``<stage>_class/<class>/<score>`` scalars when
# ``per_class_scalars`` is on (each class's scores are in the per-epoch tables either way).
PER_CLASS_SCORES = ("precision", "recall", "specificity", "f1")


def _summary_kind(key: str) -> str | None:
    stage, _, name = key.partition("/")
    if stage not in ("train", "val") or not name:
        return None
    if name == "loss":
        return "min"
    return "max" if name in _SUMMARY_MAX or name == "acc_best" else None


def _summary_only(key: str) -> bool:
    stage, _, name = key.partition("/")
    return stage in ("train", "val") and name not in CHARTED_SCORES


def _best(kind: str | None, old: Any, new: float) -> float:
    """``new``, or ``old`` where it is better (a resumed online run's summary holds the best
    of the epochs before the resume)."""
    if kind is None or not isinstance(old, (int, float)):
        return new
    return max(old, new) if kind == "max" else min(old, new)


class ProjectWandbLogger(WandbLogger):
    """Lightning's WandbLogger with the dashboard a user expects from this project.

    - the history holds the curves people compare (:data:`CHARTED_SCORES` of train and val,
      the learning rate); each one's summary is its best value (max accuracy/AUROC/F1, min
      loss); the other train/val scores are summary values only, their best;
    - ``per_class_scalars=True`` adds every class's scores of every epoch as scalars
      (:meth:`log_per_class`), 8 curves per class; off, they are the per-epoch tables of
      :func:`mbv3_lightning.tracking.results.log_run_results` alone;
    - test scores (one value each) are no one-point charts: the run's results put them in
      the run summary (:func:`mbv3_lightning.tracking.results.log_run_results`);
    - the run config is the resolved Hydra config with absolute paths and the dataset's counts
      (:meth:`log_config`): Lightning's own call with the module's hyper-parameters would
      repeat them at the top level;
    - ``log_model`` works offline too (the artifact is synced with the run);
    - no ``anonymous`` argument, which wandb deprecates and warns about even when unset.
    """

    def __init__(self, *args: Any, per_class_scalars: bool = False, **kwargs: Any) -> None:
        if kwargs.get("offline") and kwargs.get("log_model"):
            # Lightning refuses log_model with offline=True, yet W&B keeps artifacts of an
            # offline run and `wandb sync` uploads them later: run offline through W&B's own
            # `mode` instead.
            kwargs.update(offline=False, mode="offline")
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
        self.per_class_scalars = per_class_scalars
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

    def log_config(self, config: Mapping[str, Any], data: Mapping[str, Any]) -> None:
        """The resolved Hydra config with every path absolute, and the dataset's name, classes
        and images per split (``data``, :func:`~mbv3_lightning.tracking.run_config.dataset_facts`)
        as its ``data`` section."""
        if process_rank() == 0:
            self.experiment.config.update(run_config(config, data), allow_val_change=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if process_rank() != 0:
            return
        # Test scores go to the run summary once, with the run's results (log_run_results).
        kept = {k: v for k, v in metrics.items() if not k.startswith("test/")}
        summary_only = {k: v for k, v in kept.items() if _summary_only(k)}
        if summary_only:
            summary = self.experiment.summary
            summary.update(
                {k: _best(_summary_kind(k), summary.get(k), v) for k, v in summary_only.items()}
            )
        charted = {k: v for k, v in kept.items() if k not in summary_only}
        if set(charted) - {"epoch"}:  # Lightning adds the epoch to every call: no row for it alone
            self._define(charted)
            super().log_metrics(charted, step)

    def log_per_class(
        self, stage: str, rows: Sequence[Mapping[str, Any]], epoch: int, step: int
    ) -> None:
        """One epoch's per-class scores (``rows``: ``class``, precision, recall, specificity,
        F1) as ``<stage>_class/<class>/<score>`` scalars; only with ``per_class_scalars``."""
        if not self.per_class_scalars:
            return
        scores = {
            f"{stage}_class/{row['class']}/{score}": float(row[score])
            for row in rows
            for score in PER_CLASS_SCORES
        }
        self.log_metrics({**scores, "epoch": epoch}, step)
