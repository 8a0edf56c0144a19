"""The demo command with this project's fast defaults vs the defaults it had before them.

Before: NCHW batches, no RAM cache, one loader worker. After: channels_last training batches,
the RAM cache on (it fits the budget), workers chosen from the core count. Both are run as the
real `python -m mbv3_lightning` command, interleaved, and must reach the same accuracy bar.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from benchmarks.timing import interleaved, median

GOAL = 1.5
OLD_DEFAULTS = ["channels_last=false", "dataset.cache=false", "dataset.num_workers=1"]


def _demo(overrides: list[str], workdir: Path, results: list[dict]) -> float:
    run_dir = Path(tempfile.mkdtemp(dir=workdir))  # a fresh run directory per run
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mbv3_lightning", f"hydra.run.dir={run_dir}", *overrides],
        check=True,
        capture_output=True,
        cwd=workdir,
    )
    seconds = time.perf_counter() - started
    results.append(json.loads((run_dir / "metrics.json").read_text()))
    return seconds


def run(device: str, quick: bool) -> dict:
    accelerator = ["trainer.accelerator=gpu"] if device.startswith("cuda") else []
    epochs = ["trainer.max_epochs=3"] if quick else []
    with tempfile.TemporaryDirectory() as tmp:
        old, new = [], []
        times = interleaved(
            {
                "old": partial(_demo, [*OLD_DEFAULTS, *accelerator, *epochs], Path(tmp), old),
                "new": partial(_demo, [*accelerator, *epochs], Path(tmp), new),
            },
            repeats=1 if quick else 2,
        )
    rows = [
        {
            "defaults": name,
            "overrides": " ".join(OLD_DEFAULTS) if name == "old" else "(none)",
            "wall_s": round(median(times[name]), 1),
            "train_s": round(median([r["train_time_s"] for r in runs]), 1),
            "test_acc": round(min(r["metrics"]["test/acc"] for r in runs), 4),
        }
        for name, runs in (("old", old), ("new", new))
    ]
    speedup = round(rows[0]["wall_s"] / rows[1]["wall_s"], 2)
    return {
        "title": "Demo command wall time: new fast defaults vs the old defaults",
        "goal": f"new >= {GOAL}x faster, same accuracy",
        "ratio": speedup,
        "met": speedup >= GOAL and rows[1]["test_acc"] >= 0.95,
        "rows": rows,
    }
