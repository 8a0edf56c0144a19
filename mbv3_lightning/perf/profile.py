"""`mbv3 profile model=<arch>`: an architecture's efficiency in one table.

Parameters (total, trainable, used at inference), MACs and FLOPs (ptflops; FLOPs = 2 x MACs),
state-dict size on disk and batch-1 CPU latency (median and p95). With `-m model=a,b,c` each
job saves its row and the command's ``CombinedProfileTable`` writes one table for the sweep.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

PROFILE_FILE = "profile.json"
# Column title -> row key, in display order. MACs and FLOPs are both shown because papers
# (the MobileNetV3 image-classification paper's Table III among them) print MACs under the
# name FLOPs.
COLUMNS = {
    "model": "model",
    "px": "input_size",
    "params M": "params_m",
    "trainable M": "trainable_m",
    "inference params M": "inference_params_m",
    "MACs M": "macs_m",
    "FLOPs M (2xMACs)": "flops_m",
    "size MB": "size_mb",
    "median ms": "latency_median_ms",
    "p95 ms": "latency_p95_ms",
    "threads": "threads",
}


def model_label(model_cfg: DictConfig) -> str:
    """The architecture and the variant knobs that change it, e.g. ``mobilenet_v1 x0.5``."""
    net = model_cfg.net
    label = str(net.arch)
    if net.get("width_mult", 1.0) != 1.0:
        label += f" x{net.width_mult}"
    if "size" in net:
        label += f" {net.size}"
    return label


def state_dict_megabytes(net: Any) -> float:
    """Size of ``torch.save(net.state_dict())`` in MB (10^6 bytes), i.e. the file on disk."""
    import torch

    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def cpu_latency_ms(net: Any, input_size: int, *, warmup: int, runs: int) -> dict[str, float]:
    """Median and p95 wall time of ``runs`` batch-1 forward passes after ``warmup`` untimed ones."""
    import torch

    from mbv3_lightning.perf.latency import measure_latency

    if runs < 2 or warmup < 0:
        raise ValueError(f"profile.runs must be >= 2 and profile.warmup >= 0, got {runs}/{warmup}.")
    image = torch.randn(1, 3, input_size, input_size)
    net.eval()
    with torch.inference_mode():
        latency = measure_latency(lambda: net(image), runs, warmup=warmup)
    return {"latency_median_ms": latency.median_ms, "latency_p95_ms": latency.p95_ms}


def profile_model(cfg: DictConfig) -> dict[str, Any]:
    """Build ``cfg.model``'s network as training would (pretrained, freeze, ...) and measure it."""
    import torch

    from mbv3_lightning.models.complexity import complexity, inference_parameters, layer_breakdown
    from mbv3_lightning.models.freeze import freeze
    from mbv3_lightning.models.hparams import build_net
    from mbv3_lightning.models.registry import count_parameters, get_spec

    settings = cfg.profile
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    spec = get_spec(cfg.model.net.arch)
    input_size = int(settings.input_size or cfg.model.get("input_size") or spec.input_size)
    net_node = cast(dict[str, Any], OmegaConf.to_container(cfg.model.net, resolve=True))
    net = build_net(net_node, int(cfg.num_classes))
    freeze(net, spec, cfg.model.get("freeze"))
    net.eval()
    counts = complexity(net, input_size)
    row: dict[str, Any] = {
        "model": model_label(cfg.model),
        "input_size": input_size,
        "params": counts["params"],
        "params_trainable": count_parameters(net, trainable_only=True),
        "params_inference": inference_parameters(net, input_size),
        "macs": counts["macs"],
        "flops": counts["flops"],
        "size_mb": state_dict_megabytes(net),
        **cpu_latency_ms(net, input_size, warmup=settings.warmup, runs=settings.runs),
        "threads": torch.get_num_threads(),
        "runs": settings.runs,
    }
    if settings.per_layer:
        row["per_layer"] = layer_breakdown(net, input_size)
    return row


def display_row(row: dict[str, Any]) -> dict[str, str]:
    """One row formatted for the table: millions with 2-3 decimals, ms with 2."""
    m = 1e6
    values = {
        "model": row["model"],
        "input_size": str(row["input_size"]),
        "params_m": f"{row['params'] / m:.3f}",
        "trainable_m": f"{row['params_trainable'] / m:.3f}",
        "inference_params_m": f"{row['params_inference'] / m:.3f}",
        "macs_m": f"{row['macs'] / m:.1f}",
        "flops_m": f"{row['flops'] / m:.1f}",
        "size_mb": f"{row['size_mb']:.2f}",
        "latency_median_ms": f"{row['latency_median_ms']:.2f}",
        "latency_p95_ms": f"{row['latency_p95_ms']:.2f}",
        "threads": str(row["threads"]),
    }
    return {title: values[key] for title, key in COLUMNS.items()}


def per_layer_rows(row: dict[str, Any]) -> list[dict[str, str]]:
    """The per-layer split of one model as table rows (MACs and parameters with shares)."""
    return [
        {
            "model": row["model"],
            "layer kind": kind,
            "MACs (M)": f"{v['macs'] / 1e6:.1f}",
            "MACs %": f"{100 * v['macs_share']:.2f}",
            "params (M)": f"{v['params'] / 1e6:.3f}",
            "params %": f"{100 * v['params_share']:.2f}",
        }
        for kind, v in row.get("per_layer", {}).items()
    ]


def markdown_table(rows: list[dict[str, str]]) -> str:
    """A GitHub markdown table (what the README shows)."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def save_tables(rows: list[dict[str, Any]], output_dir: Path) -> None:
    """Write ``profile.csv``/``profile.md`` (+ per-layer files) and print the tables."""
    from rich.console import Console
    from rich.table import Table

    output_dir.mkdir(parents=True, exist_ok=True)
    tables = {"profile": [display_row(r) for r in rows]}
    layer_rows = [line for r in rows for line in per_layer_rows(r)]
    if layer_rows:
        tables["profile_per_layer"] = layer_rows
    console = Console()
    if not console.is_terminal:  # a log or pipe: do not squeeze the table to 80 columns
        console = Console(width=200)
    titles = {
        "profile": f"batch-1 CPU latency over {rows[0]['runs']} runs after warm-up",
        "profile_per_layer": "MACs and parameters by layer kind (conv + FC = 100%)",
    }
    for name, lines in tables.items():
        with open(output_dir / f"{name}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(lines[0]))
            writer.writeheader()
            writer.writerows(lines)
        (output_dir / f"{name}.md").write_text(markdown_table(lines))
        table = Table(title=titles[name])
        for column in lines[0]:
            is_text = column in ("model", "layer kind")
            table.add_column(column, justify="left" if is_text else "right")
        for line in lines:
            table.add_row(*line.values())
        console.print(table)
    log.info("Profile tables saved in %s", output_dir)
