"""`python -m benchmarks.run [--device cuda] [--quick] [--only a,b]`: run the suite, save results.

Writes ``benchmarks/results/<date>-<host>.json`` and a markdown table beside it. Every number
is a ratio of variants measured side by side in one process (interleaved repeats, medians),
because absolute timings on a shared machine are noise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import os
import platform
import socket
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# name -> module in this package with ``run(device, quick) -> dict``; most important first
BENCHMARKS = {
    "overhead": "benchmarks.overhead",
    "step_tax": "benchmarks.step_tax",
    "pipeline": "benchmarks.pipeline",
    "memory_format": "benchmarks.memory_format",
    "compile": "benchmarks.compile",
    "device_defaults": "benchmarks.device_defaults",
    "latency": "benchmarks.latency",
    "sweep_overhead": "benchmarks.sweep_overhead",
    "memory": "benchmarks.memory",
    "demo": "benchmarks.demo_speed",
    "bn_recalibration": "benchmarks.bn_recalibration",
    "ceiling": "benchmarks.ceiling",
}


def environment(device: str) -> dict:
    return {
        "host": socket.gethostname(),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "device": device,
        "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def to_markdown(results: dict) -> str:
    """One table per benchmark, headed by its goal and whether it was met."""
    env = results["environment"]
    lines = [
        f"# Benchmarks {env['date']} on {env['host']}",
        "",
        f"device {env['device']}, {env['cpu_count']} CPUs, {env['torch_threads']} torch threads,"
        f" torch {env['torch']}",
        "",
    ]
    for bench in results["benchmarks"].values():
        verdict = {True: "met", False: "missed", None: "reported"}[bench["met"]]
        lines += [
            f"## {bench['title']}",
            "",
            f"Goal: {bench['goal']}. Measured: **{bench['ratio']}** ({verdict});"
            f" {bench['seconds']:.0f} s.",
            "",
        ]
        lines += _table(bench["rows"])
        # Optional supporting tables, e.g. the profile behind a ratio.
        for table in bench.get("tables", []):
            lines += [f"### {table['title']}", "", *_table(table["rows"])]
    return "\n".join(lines)


def _table(rows: list[dict]) -> list[str]:
    columns = list(dict.fromkeys(key for row in rows for key in row))  # all keys, in order
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return [*lines, ""]


def _save(results: dict, previous: dict, json_path: Path) -> None:
    """Write JSON + markdown; benchmarks not rerun today keep their earlier results."""
    merged = {
        **results,
        "benchmarks": {
            name: results["benchmarks"].get(name) or previous[name]
            for name in BENCHMARKS
            if name in results["benchmarks"] or name in previous
        },
    }
    json_path.write_text(json.dumps(merged, indent=2))
    json_path.with_suffix(".md").write_text(to_markdown(merged))


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and models")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {list(BENCHMARKS)}")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda given but torch sees no GPU")
    selected = [b for b in args.only.split(",") if b] or list(BENCHMARKS)
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.basicConfig(level=logging.WARNING)

    stem = f"{dt.date.today().isoformat()}-{socket.gethostname()}"
    json_path = RESULTS_DIR / f"{stem}.json"
    # `--only` reruns some benchmarks and keeps today's results of the others.
    previous = json.loads(json_path.read_text())["benchmarks"] if json_path.exists() else {}
    results = {"environment": environment(args.device), "quick": args.quick, "benchmarks": {}}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for name in selected:
        started = time.perf_counter()
        print(f"[benchmarks] {name} ...", flush=True)
        bench = importlib.import_module(BENCHMARKS[name]).run(args.device, args.quick)
        bench["seconds"] = round(time.perf_counter() - started, 1)
        # per benchmark: `--only` runs merged into one file may differ in size
        bench["quick"] = args.quick
        bench["measured_at"] = dt.datetime.now().isoformat(timespec="seconds")
        results["benchmarks"][name] = bench
        print(f"[benchmarks] {name}: {bench['ratio']} ({bench['goal']})", flush=True)
        # Saved after every benchmark, so a failure later loses nothing measured so far.
        _save(results, previous, json_path)

    print(f"[benchmarks] wrote {json_path} and {json_path.with_suffix('.md')}")
    return json_path


if __name__ == "__main__":
    main()
