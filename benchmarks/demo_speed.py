"""The demo command today vs the same command before the performance work.

"Before" is the project as it was: the commit just before the performance work was merged,
exported with ``git archive`` into a temporary folder and run from there, with its own code and
defaults (NCHW batches, no RAM cache, one loader worker, torchvision's v2 transforms). Without git
history (an installed wheel) it falls back to today's code with those old defaults. Both are
run as the real `python -m mbv3_lightning` command, interleaved, and must reach the same
accuracy bar.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from functools import partial
from pathlib import Path

from benchmarks.timing import interleaved, median

GOAL = 1.5
REPO = Path(__file__).resolve().parents[1]
# main just before the performance work (channels_last, RAM cache, workers) was merged.
BASELINE_COMMIT = "317cd292bc891c59d60b6806c0eaf0a04378e161"
# The same defaults on today's code, when the baseline commit is not available.
OLD_DEFAULTS = ["channels_last=false", "dataset.cache=false", "dataset.num_workers=1"]


def export_baseline(destination: Path) -> Path | None:
    """The baseline commit's files in ``destination`` (``git archive``), or None without git."""
    archive = destination / "baseline.tar"
    try:
        subprocess.run(
            ["git", "-C", str(REPO), "archive", "-o", str(archive), BASELINE_COMMIT],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    checkout = destination / "baseline"
    with tarfile.open(archive) as tar:
        # Extraction filters arrived in Python 3.10.12/3.11.4; the archive is this repository's
        # own history, so older interpreters may unpack it unfiltered.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(checkout, **safe)
    return checkout


def _demo(
    overrides: list[str], workdir: Path, results: list[dict], code: Path | None = None
) -> float:
    """Wall seconds of one demo run; ``code``: run that checkout's package instead of ours."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))  # a fresh run directory per run
    env = {**os.environ, "PYTHONPATH": str(code)} if code else None
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mbv3_lightning", f"hydra.run.dir={run_dir}", *overrides],
        check=True,
        capture_output=True,
        cwd=code or workdir,
        env=env,
    )
    seconds = time.perf_counter() - started
    results.append(json.loads((run_dir / "metrics.json").read_text()))
    return seconds


def run(device: str, quick: bool) -> dict:
    # On CUDA the GPU trainer config (bf16-mixed), which the baseline commit has too.
    accelerator = ["trainer=gpu"] if device.startswith("cuda") else []
    epochs = ["trainer.max_epochs=3"] if quick else []
    with tempfile.TemporaryDirectory() as tmp:
        baseline = export_baseline(Path(tmp))
        if baseline is not None:
            before_label = (
                f"before the performance work (commit {BASELINE_COMMIT[:7]}, its own defaults)"
            )
            before = partial(_demo, [*accelerator, *epochs], Path(tmp), code=baseline)
        else:
            before_label = "old defaults on today's code: " + " ".join(OLD_DEFAULTS)
            before = partial(_demo, [*OLD_DEFAULTS, *accelerator, *epochs], Path(tmp))
        old, new = [], []
        times = interleaved(
            {
                "before": partial(before, results=old),
                "now": partial(_demo, [*accelerator, *epochs], Path(tmp), new),
            },
            repeats=1 if quick else 2,
        )
    rows = [
        {
            "code and defaults": label,
            "wall_s": round(median(times[name]), 1),
            "train_s": round(median([r["train_time_s"] for r in runs]), 1),
            "test_acc": round(min(r["metrics"]["test/acc"] for r in runs), 4),
        }
        for name, label, runs in (("before", before_label, old), ("now", "today", new))
    ]
    speedup = round(rows[0]["wall_s"] / rows[1]["wall_s"], 2)
    return {
        "title": "Demo command wall time: today vs before the performance work",
        "goal": f"today >= {GOAL}x faster, same accuracy",
        "ratio": speedup,
        "met": speedup >= GOAL and rows[1]["test_acc"] >= 0.95,
        "rows": rows,
    }
