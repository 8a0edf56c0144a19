"""`mbv3 report <sweep_dir>`: paper-style tables and figures for a sweep.

Writes ``report.md``, ``results.csv`` (one row per cell) and figures (300-dpi PNG + PDF) into
``<sweep_dir>/report``: per dataset a summary table (mean +/- std over seeds), overlaid
curves, macro ROC, test time vs accuracy, and an accuracy-vs-latency Pareto plot. When the
sweep holds the MobileNetV3 image-classification paper's datasets, ``report/paper/`` gets its
Tables III-VI (Markdown, CSV, LaTeX) and Figs 3-10 (:mod:`mbv3_lightning.sweeps.paper`).
Cells without results are listed, never silently dropped.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from mbv3_lightning.extras import require_extra
from mbv3_lightning.sweeps import figures
from mbv3_lightning.sweeps.paper import PAPER_DATASETS, write_paper_report
from mbv3_lightning.sweeps.results import Cell, Group, group_cells, load_cells
from mbv3_lightning.sweeps.search import SEARCH_FILE
from mbv3_lightning.sweeps.tables import csv_number, mean_std_text
from mbv3_lightning.tracking.results import log_report

log = logging.getLogger(__name__)

NA = "n/a"


def _fmt(stat: tuple[float, float] | None, digits: int, scale: float = 1.0) -> str:
    return NA if stat is None else mean_std_text(stat, digits, scale)


def _cell(group: Group, key: str, digits: int, scale: float = 1.0) -> str:
    """mean ± std of ``key`` over the group's seeds, marked ``(2 of 3 seeds)`` when some of
    its runs lack it."""
    partial = group.partial(key)
    return _fmt(group.stat(key), digits, scale) + (f" ({partial})" if partial else "")


# (column title, how to read it from a group): the paper's Tables III/IV/VI in one.
COLUMNS: list[tuple[str, Callable[[Group], str]]] = [
    ("model", lambda g: g.variant),
    ("params (M)", lambda g: _cell(g, "params", 2, 1e6)),
    ("FLOPs (M)", lambda g: _cell(g, "flops", 1, 1e6)),
    ("train time (s)", lambda g: _cell(g, "train_time_s", 1)),
    ("best val acc", lambda g: _cell(g, "val/acc_best", 4)),
    ("test acc", lambda g: _cell(g, "test/acc", 4)),
    ("test ms/image", lambda g: _cell(g, "test_ms_per_image", 2)),
    ("AUROC", lambda g: _cell(g, "test/auroc", figures.AUC_DIGITS)),  # as the ROC legend
    ("seeds", lambda g: f"{len(g.cells)}" + (f" ({g.missing} missing)" if g.missing else "")),
    # the paper's test time: the whole test set's prediction time / its images
    ("test set ms/image", lambda g: _cell(g, "test_set_ms_per_image", 2)),
]

CSV_FIELDS = [
    "dataset",
    "variant",
    "model",
    "seed",
    "job",
    "status",
    "params",
    "macs",
    "flops",
    "input_size",
    "epochs",
    "best_epoch",
    "train_time_s",
    "val/acc_best",
    "test/acc",
    "test/auroc",
    "test/loss",
    "test_ms_per_image",
    "test_images_per_s",
    "test_set_ms_per_image",
    "run_dir",
    "error",
]


# counts: written as integers in results.csv (metrics.json may hold them as floats)
_INTEGER_FIELDS = frozenset({"params", "macs", "flops", "input_size", "epochs", "best_epoch"})


def table_rows(groups: list[Group]) -> list[list[str]]:
    """The per-dataset table as strings, one row per variant."""
    return [[read(group) for _, read in COLUMNS] for group in groups]


def _markdown_table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows]


def _csv_row(cell: Cell) -> dict[str, Any]:
    row: dict[str, Any] = {
        "dataset": cell.dataset,
        "variant": cell.variant,
        "model": cell.model,
        "seed": cell.record.identity.seed if cell.record else None,
        "job": cell.job,
        "status": cell.status,
        "run_dir": str(cell.run_dir),
        "error": cell.error,
    }
    for key in CSV_FIELDS:
        if key not in row:
            value = cell.value(key)
            if key in _INTEGER_FIELDS and value is not None and float(value).is_integer():
                value = int(value)
            row[key] = csv_number(value, 1.0)
    return row


def write_results_csv(cells: list[Cell], path: Path) -> Path:
    """One row per cell, finished or not, with every number the tables and plots use."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(_csv_row(c) for c in cells)
    return path


def _file_stem(dataset: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in dataset)


# The per-dataset figures of the report, in the order it shows them.
DATASET_FIGURES = ("curves", "roc", "test_time")


def report_figures(per_dataset: dict[str, list[Group]]) -> dict[str, Figure | None]:
    """Every figure of the report by file stem (``curves_<dataset>``, ``roc_<dataset>``,
    ``test_time_<dataset>``, ``pareto``); ``None`` where no run recorded the data."""
    build: dict[str, Callable[[str, list[Group]], Figure | None]] = {
        "curves": figures.curves_figure,
        "roc": figures.roc_figure,
        "test_time": figures.time_accuracy_figure,
    }
    built: dict[str, Figure | None] = {}
    for dataset, groups in per_dataset.items():
        for name in DATASET_FIGURES:
            built[f"{name}_{_file_stem(dataset)}"] = build[name](dataset, groups)
    built["pareto"] = figures.pareto_figure(per_dataset)
    return built


def write_report(
    sweep_dir: Path, out_dir: Path | None = None, storage: str | None = None
) -> dict[str, Any]:
    """Build the whole report for ``sweep_dir``; returns what was written, for callers and W&B.
    ``storage``: the database URL of a search whose study is not kept in its folder."""
    cells = load_cells(sweep_dir)
    out_dir = out_dir or sweep_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    per_dataset = group_cells(cells)
    done = sum(c.complete for c in cells)
    lines = [
        f"# Sweep report: `{sweep_dir}`",
        "",
        f"{len(cells)} cells, {done} with results, {len(cells) - done} without; "
        f"generated {datetime.now().isoformat(timespec='seconds')}. "
        "Values are mean ± std over seeds; n/a = not recorded by these runs; (2 of 3 seeds) = "
        "a mean over the runs that recorded the value.",
    ]
    figure_paths: dict[str, Path] = {}
    tables: dict[str, list[list[str]]] = {}
    built = report_figures(per_dataset)
    for dataset, groups in per_dataset.items():
        tables[dataset] = table_rows(groups)
        lines += ["", f"## {dataset}", ""]
        lines += _markdown_table([title for title, _ in COLUMNS], tables[dataset])
        for name in DATASET_FIGURES:
            stem = f"{name}_{_file_stem(dataset)}"
            written = figures.write_figure(built[stem], out_dir / f"{stem}.png")
            if written is None:
                lines += ["", f"_{name.replace('_', ' ')}: {NA} (no run recorded the data)_"]
            else:
                figure_paths[f"{name}/{dataset}"] = written
                lines += ["", f"![{name} {dataset}]({written.name})"]
    pareto = figures.write_figure(built["pareto"], out_dir / "pareto.png")
    lines += ["", "## Accuracy vs latency (Pareto front)", ""]
    if pareto is None:
        lines.append(f"_{NA}: no run has both a test accuracy and a cost_")
    else:
        figure_paths["pareto"] = pareto
        lines.append(f"![pareto]({pareto.name})")
    paper = None
    if any(dataset in PAPER_DATASETS for dataset in per_dataset):
        paper = write_paper_report(cells, per_dataset, out_dir / "paper")
        lines += ["", *paper["markdown"]]
        figure_paths.update({f"paper/{k}": v for k, v in paper["figures"].items()})
    if (sweep_dir / SEARCH_FILE).is_file():
        require_extra("search", "The report of an Optuna search")
        from mbv3_lightning.sweeps.search.report import search_section

        search_lines, search_figures = search_section(sweep_dir, out_dir, storage)
        lines += search_lines
        figure_paths.update(search_figures)
    missing = [c for c in cells if not c.complete]
    if missing:
        lines += ["", "## Cells without results", ""]
        lines += _markdown_table(
            ["job", "overrides", "status", "error"],
            [
                [
                    str(c.job),
                    " ".join(c.overrides) or str(c.run_dir),
                    "running or interrupted" if c.status == "running" else c.status,
                    c.error or "",
                ]
                for c in missing
            ],
        )
    results_csv = write_results_csv(cells, out_dir / "results.csv")
    report_md = out_dir / "report.md"
    report_md.write_text("\n".join(lines) + "\n")
    log.info("Report written to %s", report_md)
    return {
        "report_md": report_md,
        "results_csv": results_csv,
        "figures": figure_paths,
        "tables": tables,
        "cells": cells,
        "paper": paper,
    }


def log_to_wandb(sweep_dir: Path, written: dict[str, Any], project: str) -> str:
    """One W&B run in the sweep's group holding the results table and every figure.

    Returns the group the run was logged in.
    """
    records = [c.record for c in written["cells"] if c.record is not None]
    task = (records[0].config or {}).get("task_name", "train") if records else "train"
    return log_report(
        project=project,
        # the group training/run.py gives the sweep's jobs
        group=f"{task}-{sweep_dir.parent.name}-{sweep_dir.name}",
        name=f"report-{sweep_dir.name}",
        folder=written["report_md"].parent,
        results_csv=written["results_csv"],
        figures=written["figures"],
    )
