"""`mbv3 check dataset=<name>`: audit a dataset before training on it.

Prints per-split class counts and a summary (sizes, colour modes, unreadable files, files
skipped for their extension, duplicates within and across splits, imbalance) and writes
``data_report.json`` to the run directory. Composes the same ``dataset/`` configs as
training, so every override works here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from mbv3_lightning.cli.config import config_dir, register_resolvers

register_resolvers()

# Size only matters for loading, which the check never does; any valid value will do.
_UNUSED_INPUT_SIZE = 224
_MAX_DUPLICATES_SHOWN = 10
_MAX_IGNORED_SHOWN = 10


def render_counts(report: dict[str, Any]) -> Table:
    """Classes as rows, splits as columns."""
    splits = report["splits"]
    table = Table(title=f"{report['dataset']}: images per class")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    for name in report["classes"].values():
        table.add_row(name, *(str(splits[s]["class_counts"].get(name, 0)) for s in splits))
    table.add_row("total", *(str(splits[s]["images"]) for s in splits), style="bold")
    return table


def render_summary(report: dict[str, Any]) -> Table:
    """Sizes, modes, unreadable files, duplicates and imbalance in one two-column table."""
    table = Table(title=f"{report['dataset']}: checks", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for split, stats in report["splits"].items():
        width, height = stats["width"], stats["height"]
        if width:
            table.add_row(
                f"{split} size (w x h)",
                f"min {width['min']}x{height['min']}, median {width['median']:g}x"
                f"{height['median']:g}, max {width['max']}x{height['max']}; "
                f"{stats['tiny_images']} under 32 px",
            )
        modes = ", ".join(f"{mode} {n}" for mode, n in stats["colour_modes"].items())
        table.add_row(f"{split} colour modes", modes)
    unreadable = report["unreadable_files"]
    table.add_row("unreadable files", "\n".join(unreadable) if unreadable else "none")
    ignored = report["ignored_files"]
    shown = ignored[:_MAX_IGNORED_SHOWN]
    if len(ignored) > len(shown):
        shown.append(f"... and {len(ignored) - len(shown)} more (data_report.json)")
    table.add_row("not an image extension (ignored)", "\n".join(shown) or "none")
    table.add_row("duplicate groups", str(report["duplicate_groups"]))
    leakage = ", ".join(f"{pair}: {n}" for pair, n in report["leakage"].items())
    table.add_row("across splits (leakage)", leakage or "none")
    for group in [g for g in report["duplicates"] if g["across_splits"]][:_MAX_DUPLICATES_SHOWN]:
        table.add_row("  duplicate", " = ".join(f["path"] for f in group["files"]))
    ratio = report["imbalance_ratio"]
    table.add_row("imbalance (max/min train)", f"{ratio:.1f}" if ratio else "n/a")
    return table


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="check")
def main(cfg: DictConfig) -> None:
    # imported here, as in mbv3_lightning/cli/train.py, so `--help` answers without torch
    from hydra.utils import instantiate

    from mbv3_lightning.data.audit import audit

    datamodule = instantiate(
        cfg.dataset,
        input_size=cfg.dataset.get("input_size") or _UNUSED_INPUT_SIZE,
        bad_images="skip",  # report unreadable files rather than stop at them
    )
    report = audit(datamodule)
    out = Path(cfg.paths.output_dir) / "data_report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    console = Console()
    console.print(render_counts(report))
    console.print(render_summary(report))
    print(f"Report written to {out}")  # the CLI's final summary


if __name__ == "__main__":
    main()
