"""The short, readable table printed at the end of a run, read from its :class:`RunRecord`."""

from __future__ import annotations

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


def result_table(record: RunRecord) -> Table:
    """A two-column table: what was trained, how well, how long, where the files are."""
    data, cost, timings = record.data, record.cost, record.timings
    table = Table(title=f"{record.model} on {record.dataset}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    # Without a test split the best checkpoint is scored on val: say so on every row.
    split = data.evaluated_split or "test"
    for key, label in _SHOWN_METRICS:
        if key in record.metrics:
            shown = (
                label.replace("test", f"{split} (best checkpoint)") if split != "test" else label
            )
            table.add_row(shown, f"{record.metrics[key]:.4f}")
    table.add_row("classes", str(data.num_classes))
    table.add_row("input size", f"{data.input_size} px")
    # An evaluated export counts no parameters and knows no epochs: rows left out.
    if cost.params_total is not None:
        table.add_row("parameters", f"{cost.params_total:,}")
    if cost.macs is not None:
        table.add_row("MACs", f"{cost.macs / 1e6:.1f} M")
    if timings.epochs is not None:
        epochs = str(timings.epochs)
        if timings.best_epoch is not None:  # 0-based in metrics.json; people count from 1
            epochs += f" (best: {timings.best_epoch + 1})"
        table.add_row("epochs", epochs)
    if data.skipped_images:
        # Named in the log and in split_manifest.json; easy to miss in a long log.
        table.add_row("skipped images", f"{data.skipped_images} (split_manifest.json)")
    if timings.train_time_s is not None:  # None when a checkpoint is only evaluated
        table.add_row("train time", f"{timings.train_time_s:.1f} s")
    if cost.test_ms_per_image:
        speed = cost.test_ms_per_image
        table.add_row("test time / image", f"{speed['median']:.1f} ms (p95 {speed['p95']:.1f})")
        table.add_row("test throughput", f"{cost.test_images_per_s:.0f} images/s")
    if cost.pte_ms_per_image:
        pte = cost.pte_ms_per_image
        threads = f"{cost.pte_threads} thread" + ("" if cost.pte_threads == 1 else "s")
        table.add_row(
            "ExecuTorch .pte / image",
            f"{pte['median']:.2f} ms (p95 {pte['p95']:.2f}, batch 1, {threads})",
        )
    if cost.test_set_ms_per_image is not None:
        table.add_row(
            "test set time / image",
            f"{cost.test_set_ms_per_image:.1f} ms ({cost.test_set_images} images)",
        )
    table.add_row("wall time", f"{timings.wall_time_s:.1f} s")
    table.add_row("run directory", record.identity.run_dir)
    return table


def print_result_table(record: RunRecord) -> None:
    Console().print(result_table(record))
