"""`mbv3 report <sweep_dir>`: paper-style tables and figures for a sweep.

<sweep_dir> is the folder a multirun wrote, e.g. outputs/multirun/2026-11-23/12-00-00. Writes
report.md, results.csv (one row per cell) and figures (300-dpi PNG + PDF) into
<sweep_dir>/report (or report.out=DIR) and prints each dataset's table: per dataset a summary
(mean +/- std over seeds), curves, macro ROC, test time vs accuracy and an accuracy-vs-latency
Pareto plot; for the MobileNetV3 paper's datasets also report/paper/ with its Tables III-VI and
Figs 3-10. Cells without results are listed, never dropped. report.wandb=true also logs the
tables and figures to W&B, as one run in the sweep's group (W&B project: report.project).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from mbv3_lightning.resources import resource_path
from mbv3_lightning.sweeps.report import COLUMNS, log_to_wandb, write_report

# What the console shows when the whole table (COLUMNS) is wider than the terminal: the
# comparison a reader wants first; report.md, the CSV and the TeX tables have every column.
CONSOLE_COLUMNS = ("model", "params (M)", "FLOPs (M)", "best val acc", "test acc", "test ms/image")


def _parse_args(argv: Sequence[str]) -> tuple[Path, DictConfig]:
    """``<sweep_dir>`` plus ``report.key=value`` overrides on top of conf/report.yaml."""
    positional = [a for a in argv if "=" not in a]
    if len(positional) != 1 or positional[0] in ("-h", "--help"):
        raise SystemExit(
            "usage: mbv3 report <sweep_dir> [report.out=DIR] "
            "[report.wandb=true]\n  <sweep_dir> is the folder a multirun wrote, "
            "e.g. outputs/multirun/2026-11-23/12-00-00"
        )
    cfg = OmegaConf.load(resource_path("conf") / "report.yaml")
    OmegaConf.set_struct(cfg, True)  # a misspelt key is an error, not silently ignored
    try:
        merged = OmegaConf.merge(cfg, OmegaConf.from_dotlist([a for a in argv if "=" in a]))
    except Exception as err:
        raise SystemExit(f"Bad report option: {err}. Known: {list(cfg.report)}") from None
    assert isinstance(merged, DictConfig)
    return Path(positional[0]), merged


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: write the report and print each dataset's table."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sweep_dir, cfg = _parse_args(sys.argv[1:] if argv is None else argv)
    try:
        written = write_report(
            sweep_dir, Path(cfg.report.out) if cfg.report.out else None, cfg.report.storage
        )
    except FileNotFoundError as err:
        raise SystemExit(str(err)) from None
    console = Console()
    for dataset, rows in written["tables"].items():
        console.print(_console_table(dataset, rows, console))
    if cfg.report.wandb:
        group = log_to_wandb(sweep_dir, written, cfg.report.project)
        console.print(f"Logged to W&B group '{group}'.")
    console.print(f"Report: {written['report_md']}")


def _console_table(dataset: str, rows: list[list[str]], console: Console) -> Table:
    """Every column if it fits the terminal, else :data:`CONSOLE_COLUMNS` (a cell cut to
    "mobi…" or a value wrapped over two lines is no use to a reader)."""
    titles = [title for title, _ in COLUMNS]
    keep = list(range(len(titles)))
    full = _table(dataset, titles, rows, keep)
    unbounded = console.options.update(width=10_000)  # the table's natural width
    if console.measure(full, options=unbounded).maximum <= console.width:
        return full
    keep = [titles.index(title) for title in CONSOLE_COLUMNS]
    table = _table(dataset, titles, rows, keep)
    table.caption = "More columns in report.md (and the CSV and TeX tables)."
    return table


def _table(dataset: str, titles: list[str], rows: list[list[str]], keep: list[int]) -> Table:
    table = Table(title=dataset)
    for i in keep:
        table.add_column(titles[i], no_wrap=i == 0)
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


if __name__ == "__main__":
    main()
