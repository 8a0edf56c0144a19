"""The short, readable table printed at the end of a run, from its :class:`RunRecord`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from mbv3_lightning.runs.record import RunRecord

_SHOWN_METRICS = (
    ("test/acc", "test accuracy"),
    ("test/auroc", "test AUROC (macro)"),
    ("test/f1", "test F1 (macro)"),
    ("val/acc_best", "best val accuracy"),
    ("test/loss", "test loss"),
)


def render_summary(record: RunRecord | Mapping[str, Any]) -> Table:
    """A two-column table: what was trained, how well, how long, where the files are."""
    if not isinstance(record, RunRecord):
        record = RunRecord.from_json(record)  # a metrics.json dict
    summary = record.to_json()
    table = Table(title=f"{record.model} on {record.dataset}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    metrics = summary["metrics"]
    # Without a test split the best checkpoint is scored on val: say so on every row.
    split = summary.get("evaluated_split") or "test"
    for key, label in _SHOWN_METRICS:
        if key in metrics:
            shown = (
                label.replace("test", f"{split} (best checkpoint)") if split != "test" else label
            )
            table.add_row(shown, f"{metrics[key]:.4f}")
    table.add_row("classes", str(summary["num_classes"]))
    table.add_row("input size", f"{summary['input_size']} px")
    # An evaluated export counts no parameters and knows no epochs: rows left out.
    if summary.get("params_total") is not None:
        table.add_row("parameters", f"{summary['params_total']:,}")
    if summary.get("macs") is not None:
        table.add_row("MACs", f"{summary['macs'] / 1e6:.1f} M")
    if summary.get("epochs") is not None:
        table.add_row("epochs", str(summary["epochs"]))
    if summary.get("skipped_images"):
        # Named in the log and in split_manifest.json; easy to miss in a long log.
        table.add_row("skipped images", f"{summary['skipped_images']} (split_manifest.json)")
    if summary.get("train_time_s") is not None:  # None when a checkpoint is only evaluated
        table.add_row("train time", f"{summary['train_time_s']:.1f} s")
    if summary.get("test_ms_per_image"):
        speed = summary["test_ms_per_image"]
        table.add_row("test time / image", f"{speed['median']:.1f} ms (p95 {speed['p95']:.1f})")
        table.add_row("test throughput", f"{summary['test_images_per_s']:.0f} images/s")
    if summary.get("test_set_ms_per_image") is not None:
        table.add_row(
            "test set time / image",
            f"{summary['test_set_ms_per_image']:.1f} ms ({summary['test_set_images']} images)",
        )
    table.add_row("wall time", f"{summary['wall_time_s']:.1f} s")
    table.add_row("run directory", summary["run_dir"])
    return table


def print_summary(record: RunRecord | Mapping[str, Any]) -> None:
    Console().print(render_summary(record))
