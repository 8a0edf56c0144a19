"""What a finished run leaves in its directory: metrics.json, tables, curves and figures.

Every file is written under a temporary name and renamed into place, and ``metrics.json`` is
written last: its presence means the run (training, test and every file) is complete.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torchmetrics
import torchvision

from mbv3_lightning.metrics import EvaluationReport
from mbv3_lightning.models.complexity import complexity
from mbv3_lightning.plots import plot_confusion, plot_curves, plot_roc
from mbv3_lightning.timing import time_inference

log = logging.getLogger(__name__)

CURVE_COLUMNS = ("epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr")
PER_CLASS_COLUMNS = ("class", "precision", "recall", "specificity", "f1", "support")
_PACKAGE_DIR = Path(__file__).resolve().parent


def software_versions() -> dict[str, str]:
    """Versions of Python and the libraries whose numbers could change a result."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "torchmetrics": torchmetrics.__version__,
    }


def git_commit() -> str | None:
    """The commit of the code that ran (``None`` when not run from a git checkout)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def model_cost(
    net: torch.nn.Module,
    input_size: int,
    test_images: torch.Tensor | None,
    timing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``params``/``macs``/``flops`` and, given a test batch, the test-time speed on the
    device ``net`` is on (``timing``: overrides of :func:`time_inference`'s repeat counts)."""
    cost: dict[str, Any] = {**complexity(net, input_size)}
    if test_images is None:
        return {**cost, "test_ms_per_image": None, "test_images_per_s": None}
    return {**cost, **time_inference(net, test_images, **(timing or {}))}


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


def best_epoch(curves: Sequence[dict[str, Any]]) -> int | None:
    """The first epoch with the highest ``val/acc``: the one the best checkpoint holds."""
    scored = [(r["val/acc"], -r["epoch"]) for r in curves if r.get("val/acc") is not None]
    return -max(scored)[1] if scored else None


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    # The suffix keeps the extension last, so matplotlib still sees a .png.
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text(path: Path, text: str) -> None:
    _write_atomically(path, lambda tmp: tmp.write_text(text))


def _write_csv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})

    _write_atomically(path, write)


def write_run_files(
    run_dir: Path,
    summary: dict[str, Any],
    curves: Sequence[dict[str, Any]],
    report: EvaluationReport | None,
) -> None:
    """Write curves.csv/png, per_class.csv, roc.json/png, confusion.png, then metrics.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    # A resumed run rewrites everything: until the new metrics.json lands, none may claim
    # the directory holds a finished run.
    (run_dir / "metrics.json").unlink(missing_ok=True)
    title = f"{summary['model']} on {summary['dataset']}"
    _write_csv(run_dir / "curves.csv", CURVE_COLUMNS, curves)
    if curves:
        _write_atomically(run_dir / "curves.png", lambda p: plot_curves(curves, p, title))
    if report is not None:
        _write_csv(run_dir / "per_class.csv", PER_CLASS_COLUMNS, report.per_class)
        _write_text(run_dir / "roc.json", json.dumps(report.roc))
        _write_atomically(run_dir / "roc.png", lambda p: plot_roc(report.roc, p, title))
        _write_atomically(
            run_dir / "confusion.png",
            lambda p: plot_confusion(report.confusion, report.class_names, p, title),
        )
    _write_text(run_dir / "metrics.json", json.dumps(summary, indent=2))
    log.info("Run files written to %s", run_dir)
