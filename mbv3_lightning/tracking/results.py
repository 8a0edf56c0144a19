"""What goes to W&B once a run is scored, beyond Lightning's per-epoch curves, each thing
once: the summary numbers (test scores included), native ROC / confusion plots, the per-class
tables (test, and every epoch of train and val) and the PNG figures."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import WandbLogger

from mbv3_lightning.runs.record import EvaluationReport, RunRecord
from mbv3_lightning.runs.run_dir import RunDir

log = logging.getLogger(__name__)

# W&B's native line and confusion-matrix charts become unreadable (and heavy) beyond this;
# larger runs get their ROC averages natively and the full figures as images.
MAX_NATIVE_PLOT_CLASSES = 30


# How many test images the predictions table shows (thumbnails, label, prediction, confidence).
MAX_PREDICTION_ROWS = 100


@dataclass(frozen=True)
class Prediction:
    """One test image as the predictions table shows it."""

    image: np.ndarray  # HxWx3 uint8, as the model saw it (after resizing and cropping)
    label: str
    predicted: str
    confidence: float


def summary_scalars(record: RunRecord) -> dict[str, float | int]:
    """The headline numbers of metrics.json, flat, for the W&B run summary.

    Per-epoch train/val values are left out: their summary is each score's best value
    (:class:`~mbv3_lightning.tracking.logger.ProjectWandbLogger`), which the last epoch's
    value would overwrite.
    """
    scalars: dict[str, float | int] = {
        k: v for k, v in record.metrics.items() if not k.startswith(("train/", "val/"))
    }
    cost, timings = record.cost, record.timings
    for key, value in (
        ("best_epoch", timings.best_epoch),
        ("params", cost.params),
        ("macs", cost.macs),
        ("flops", cost.flops),
        ("train_time_s", timings.train_time_s),
        ("test_images_per_s", cost.test_images_per_s),
    ):
        if value is not None:
            scalars[key] = value
    for stat, value in (cost.test_ms_per_image or {}).items():
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
    logger: WandbLogger,
    record: RunRecord,
    report: EvaluationReport | None,
    run_dir: Path,
    predictions: Sequence[Prediction] = (),
    epoch_rows: Sequence[dict[str, Any]] = (),
) -> None:
    """Summary numbers (test scores among them), per-class tables (test; train and val per
    epoch, ``epoch_rows`` as per_class_epochs.csv holds them), ROC / confusion charts, the
    predictions table with thumbnails and the PNGs of one run."""
    import wandb

    run = logger.experiment
    run.summary.update(summary_scalars(record))
    if record.data.evaluated_split:  # "val" when the dataset had no test split
        run.summary["evaluated_split"] = record.data.evaluated_split
    media: dict[str, Any] = {}
    for stage in ("train", "val"):
        rows = [row for row in epoch_rows if row["stage"] == stage]
        if rows:  # one table per stage, not a curve per class and score
            columns = [c for c in rows[0] if c != "stage"]
            media[f"{stage}/per_class_epochs"] = wandb.Table(
                columns=list[str | int](columns), data=[[row[c] for c in columns] for row in rows]
            )
    if predictions:
        media["test/predictions"] = wandb.Table(
            columns=["image", "label", "predicted", "confidence", "correct"],
            data=[
                [wandb.Image(p.image), p.label, p.predicted, p.confidence, p.label == p.predicted]
                for p in predictions
            ],
        )
    if report is not None:
        test_columns = list(report.per_class[0])
        media["test/per_class"] = wandb.Table(
            columns=list[str | int](test_columns),
            data=[[row[c] for c in test_columns] for row in report.per_class],
        )
        media["test/roc"] = _roc_chart(wandb, report)
        if len(report.class_names) <= MAX_NATIVE_PLOT_CLASSES:
            media["test/confusion_matrix"] = _confusion_chart(wandb, report)
    files = RunDir(run_dir)
    # Not curves.png: W&B draws the same curves itself, comparable between runs.
    figures = (
        files.roc_png,
        files.confusion_png,
        files.confusion_png_of("train"),  # the best epoch's train and val matrices
        files.confusion_png_of("val"),
    )
    for path in figures:
        if path.is_file():
            media[f"figures/{path.stem}"] = wandb.Image(str(path))
    if media:
        run.log(media)


def log_report(
    *,
    project: str,
    group: str,
    name: str,
    folder: Path,
    results_csv: Path,
    figures: dict[str, Path],
) -> str:
    """A sweep report as one W&B run of job type ``report`` in the sweep's ``group``: the
    results table and every figure. Returns the group it was logged in."""
    import csv

    import wandb

    from mbv3_lightning.tracking.mode import wandb_offline

    run = wandb.init(
        project=project,
        group=group,
        job_type="report",
        name=name,
        dir=str(folder),
        mode="offline" if wandb_offline() else "online",
    )
    try:
        with results_csv.open(newline="") as f:
            rows = list(csv.reader(f))
        run.log({"results": wandb.Table(columns=list[str | int](rows[0]), data=rows[1:])})
        run.log({key: wandb.Image(str(path)) for key, path in figures.items()})
        return run.group
    finally:
        run.finish()
