"""What one sweep cell costs beyond `fit`: Hydra composition, instantiation, loggers."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from benchmarks.timing import median
from mbv3_lightning.cli.config import CONFIG_NAME, compose_config, register_resolvers
from mbv3_lightning.training.run import run as train_run

GOAL_S = 3.0


def _cell(overrides: list[str], output_dir: Path) -> dict[str, float]:
    """Compose and run one `debug=fast` cell in-process, as a multirun job does."""
    start = time.perf_counter()
    cfg = compose_config(CONFIG_NAME, overrides, hydra_runtime=True, output_dir=output_dir)
    record = train_run(cfg)
    total = time.perf_counter() - start
    return {"total_s": total, "fit_s": float(record.timings.train_time_s or 0.0)}


def run(device: str, quick: bool) -> dict:
    logging.getLogger("lightning").setLevel(logging.WARNING)
    register_resolvers()
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for logger in ("csv", "wandb"):
            overrides = ["debug=fast", f"logger={logger}", f"trainer.accelerator={accelerator}"]
            cells = [_cell(overrides, Path(tmp) / f"{logger}-{i}") for i in range(3)]
            # The first cell also pays one-off imports; a multirun pays them once.
            steady = [c["total_s"] - c["fit_s"] for c in cells[1:]]
            rows.append(
                {
                    "logger": logger,
                    "first_cell_overhead_s": round(cells[0]["total_s"] - cells[0]["fit_s"], 2),
                    "cell_overhead_s": round(median(steady), 2),
                    "cell_fit_s": round(median([c["fit_s"] for c in cells[1:]]), 2),
                }
            )
    worst = max(r["cell_overhead_s"] for r in rows)
    return {
        "title": "Sweep overhead per debug=fast cell (seconds outside fit)",
        "goal": f"<= {GOAL_S} s",
        "ratio": worst,
        "met": worst <= GOAL_S,
        "rows": rows,
    }
