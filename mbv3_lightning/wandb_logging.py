"""What goes to W&B beyond Lightning's per-epoch curves: the run's identity across resumes,
the summary numbers, native ROC / confusion plots, the per-class table and the PNG figures.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, WandbLogger

from mbv3_lightning.metrics import EvaluationReport

log = logging.getLogger(__name__)

WANDB_RUN_ID_KEY = "wandb_run_id"
# W&B's native line and confusion-matrix charts become unreadable (and heavy) beyond this;
# larger runs get their ROC averages natively and the full figures as images.
MAX_NATIVE_PLOT_CLASSES = 30
FIGURES = ("curves.png", "roc.png", "confusion.png")


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
    checkpoint = torch.load(ckpt_path, map_location="cpu", mmap=True, weights_only=True)
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


def summary_scalars(summary: dict[str, Any]) -> dict[str, float | int]:
    """The headline numbers of metrics.json, flat, for the W&B run summary."""
    scalars: dict[str, float | int] = dict(summary["metrics"])
    for key in ("best_epoch", "params", "macs", "flops", "train_time_s", "test_images_per_s"):
        if summary.get(key) is not None:
            scalars[key] = summary[key]
    for stat, value in (summary.get("test_ms_per_image") or {}).items():
        scalars[f"test_ms_per_image/{stat}"] = value
    return scalars


def _roc_chart(wandb: Any, report: EvaluationReport) -> Any:
    curves = {f"{k}-average": report.roc[k] for k in ("micro", "macro")}
    if len(report.class_names) <= MAX_NATIVE_PLOT_CLASSES:
        curves.update(report.roc["classes"])
    return wandb.plot.line_series(
        xs=[c["fpr"] for c in curves.values()],
        ys=[c["tpr"] for c in curves.values()],
        keys=[f"{name} (AUC {c['auc']:.3f})" for name, c in curves.items()],
        title="ROC (test)",
        xname="false positive rate",
    )


def _confusion_chart(wandb: Any, report: EvaluationReport) -> Any:
    # The same table and chart wandb.plot.confusion_matrix builds, from our counts
    # (it would otherwise need every prediction again).
    names = report.class_names
    rows = [
        [names[i], names[j], count]
        for i, row in enumerate(report.confusion)
        for j, count in enumerate(row)
    ]
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows)
    fields = {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"}
    return wandb.plot_table(
        "wandb/confusion_matrix/v1", table, fields, {"title": "Confusion matrix (test)"}
    )


def log_run_results(
    logger: WandbLogger, summary: dict[str, Any], report: EvaluationReport | None, run_dir: Path
) -> None:
    """Summary numbers, per-class table, ROC / confusion charts and the PNGs of one run."""
    import wandb

    run = logger.experiment
    run.summary.update(summary_scalars(summary))
    media: dict[str, Any] = {}
    if report is not None:
        columns = list(report.per_class[0])
        media["test/per_class"] = wandb.Table(
            columns=columns, data=[[row[c] for c in columns] for row in report.per_class]
        )
        media["test/roc"] = _roc_chart(wandb, report)
        if len(report.class_names) <= MAX_NATIVE_PLOT_CLASSES:
            media["test/confusion_matrix"] = _confusion_chart(wandb, report)
    for name in FIGURES:
        if (run_dir / name).is_file():
            media[f"figures/{Path(name).stem}"] = wandb.Image(str(run_dir / name))
    if media:
        run.log(media)
