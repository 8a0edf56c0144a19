"""What a finished run leaves in its directory besides Lightning's own files: metrics.json,
curves, the per-class table, ROC and the figures; and the one reader of Lightning's metrics.csv.

Every file goes through :func:`mbv3_lightning.runs.run_dir.write_atomic`, and ``metrics.json``
is written last: its presence means the run (training, test and every file) is complete.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from mbv3_lightning.runs.figures import plot_confusion, plot_curves, plot_roc
from mbv3_lightning.runs.record import EvaluationReport, RunRecord
from mbv3_lightning.runs.run_dir import RunDir, write_atomic

log = logging.getLogger(__name__)

CURVE_COLUMNS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr")
PER_CLASS_COLUMNS = ("class", "precision", "recall", "specificity", "f1", "support", "split")
PER_CLASS_EPOCH_COLUMNS = (
    "epoch",
    "stage",
    "class",
    "precision",
    "recall",
    "specificity",
    "f1",
    "support",
)


def _number(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def read_curves(metrics_csv: Path) -> list[dict[str, Any]]:
    """One row per epoch (epoch, train/loss, train/acc, val/loss, val/acc, lr) from the CSV log.

    Lightning writes train and val of an epoch on separate rows; the learning-rate monitor
    writes its row (without an epoch) just before the epoch it belongs to. After a resume an
    epoch can appear twice: the later value wins, as it is the one the run continued from.
    """
    if not metrics_csv.is_file():
        return []
    with metrics_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    lr_columns = sorted(c for c in (rows[0] if rows else {}) if c.startswith("lr-"))
    by_epoch: dict[int, dict[str, Any]] = {}
    pending_lr: float | None = None
    for row in rows:
        if lr_columns and _number(row.get(lr_columns[0])) is not None:
            pending_lr = _number(row[lr_columns[0]])
        if not row.get("epoch"):
            continue
        epoch = int(row["epoch"])
        values = {key: _number(row.get(key)) for key in CURVE_COLUMNS[1:-1]}
        if all(v is None for v in values.values()):
            continue  # e.g. the test row, logged at the epoch after the last one
        entry = by_epoch.setdefault(epoch, dict.fromkeys(CURVE_COLUMNS[1:]))
        entry.update({k: v for k, v in values.items() if v is not None})
        if pending_lr is not None:
            entry["lr"] = pending_lr
            pending_lr = None
    return [{"epoch": epoch, **by_epoch[epoch]} for epoch in sorted(by_epoch)]


def last_epoch_metrics(metrics_csv: Path) -> dict[str, float]:
    """The values the training loop logged last (the last epoch's train and val scores,
    ``val/acc_best``, the learning rate), the later row winning: the fit metrics of a run whose
    training had finished before this process started (a resume after the last checkpoint)."""
    if not metrics_csv.is_file():
        return {}
    with metrics_csv.open(newline="") as f:
        rows = [
            {k: float(v) for k, v in row.items() if k not in ("epoch", "step") and v}
            for row in csv.DictReader(f)
        ]
    values: dict[str, float] = {}
    for row in rows:
        values.update({k: v for k, v in row.items() if not k.startswith("test/")})
    return values


def best_epoch(curves: Sequence[dict[str, Any]]) -> int | None:
    """The first epoch with the highest ``val/acc``: the one the best checkpoint holds."""
    scored = [(r["val/acc"], -r["epoch"]) for r in curves if r.get("val/acc") is not None]
    return -max(scored)[1] if scored else None


def read_curves_csv(curves_csv: Path) -> list[dict[str, float]]:
    """The rows of a ``curves.csv`` this module wrote, as numbers; empty cells are left out."""
    with curves_csv.open(newline="") as f:
        return [
            {k: float(v) for k, v in row.items() if k and v not in ("", None)}
            for row in csv.DictReader(f)
        ]


def read_run_curves(run_dir: RunDir | Path) -> list[dict[str, float]]:
    """A run's per-epoch curves: ``curves.csv`` if written, else derived from ``metrics.csv``
    (runs that stopped before writing their files); values a run did not log are left out."""
    run_dir = RunDir(Path(run_dir))
    if run_dir.curves_csv.is_file():
        return read_curves_csv(run_dir.curves_csv)
    return [
        {k: float(v) for k, v in row.items() if v is not None}
        for row in read_curves(run_dir.metrics_csv)
    ]


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})

    write_atomic(path, write)


def write_epoch_files(
    run_dir: RunDir | Path,
    epoch_confusions: Sequence[dict[str, Any]],
    epoch_rows: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    best: int | None,
    title: str,
) -> None:
    """per_class_epochs.csv (``epoch_rows``: every epoch, train and val), epoch_confusions.json
    (the matrices they come from) and confusion_train.png / confusion_val.png of the best
    epoch. A resumed run can hold an epoch twice: the later matrix wins."""
    run_dir = RunDir(Path(run_dir))
    if not epoch_confusions:
        return
    _write_csv(run_dir.per_class_epochs_csv, PER_CLASS_EPOCH_COLUMNS, epoch_rows)
    write_atomic(
        run_dir.epoch_confusions_json,
        json.dumps(
            {"class_names": list(class_names), "best_epoch": best, "epochs": list(epoch_confusions)}
        ),
    )
    if best is None:
        return
    latest = {(e["epoch"], e["stage"]): e["confusion"] for e in epoch_confusions}
    for stage in ("train", "val"):
        confusion = latest.get((best, stage))
        if confusion is None:
            continue
        # 0-based in the files, as Lightning counts; a figure counts from 1, as people do
        subtitle = f"{title}, {stage} split, best epoch {best + 1}"
        write_atomic(
            run_dir.confusion_png_of(stage),
            partial(plot_confusion, confusion, list(class_names), subtitle=subtitle),
        )


def write_split_files(
    run_dir: RunDir | Path, manifest: dict[str, Any], class_indices: dict[str, Any]
) -> None:
    """``split_manifest.json`` (the exact file lists of the run's splits) and
    ``class_indices.json``: written when the run starts, so it can be audited and resumed."""
    run_dir = RunDir(Path(run_dir))
    write_atomic(run_dir.split_manifest, json.dumps(manifest, indent=1))
    write_atomic(run_dir.class_indices, json.dumps(class_indices, indent=1))


def write_run_files(
    run_dir: RunDir | Path,
    record: RunRecord,
    curves: Sequence[dict[str, Any]],
    report: EvaluationReport | None,
    epoch_confusions: Sequence[dict[str, Any]] = (),
    epoch_rows: Sequence[dict[str, Any]] = (),
) -> None:
    """Write curves.csv/png, per_class.csv, roc.json/png, confusion.png, the per-epoch
    per-class files, then metrics.json. The evaluation files name the split they describe
    (``record.data.evaluated_split``: test, or val for a dataset without a test split)."""
    run_dir = RunDir(Path(run_dir))
    run_dir.path.mkdir(parents=True, exist_ok=True)
    # A resumed run rewrites everything: until the new metrics.json lands, none may claim
    # the directory holds a finished run.
    run_dir.metrics_json.unlink(missing_ok=True)
    title = f"{record.model} on {record.dataset}"
    _write_csv(run_dir.curves_csv, CURVE_COLUMNS, curves)
    if curves:
        write_atomic(run_dir.curves_png, lambda p: plot_curves(curves, p, title))
    write_epoch_files(
        run_dir,
        epoch_confusions,
        epoch_rows,
        record.data.class_names,
        record.timings.best_epoch,
        title,
    )
    if report is not None:
        split = record.data.evaluated_split or "test"
        eval_title = f"{title}, {split} split"
        _write_csv(
            run_dir.per_class_csv,
            PER_CLASS_COLUMNS,
            [{**row, "split": split} for row in report.per_class],
        )
        write_atomic(run_dir.roc_json, json.dumps({**report.roc, "split": split}))
        write_atomic(run_dir.roc_png, lambda p: plot_roc(report.roc, p, eval_title))
        write_atomic(
            run_dir.confusion_png,
            lambda p: plot_confusion(report.confusion, report.class_names, p, eval_title),
        )
    write_atomic(run_dir.metrics_json, json.dumps(record.to_json(), indent=2))
    log.info("Run files written to %s", run_dir.path)
