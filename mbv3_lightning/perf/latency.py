"""Wall-clock latency of a repeated call: median and 95th percentile after a warm-up.

The one timing primitive behind test time per image (run files), the profile command, the
export comparison and the benchmarks, so every table measures the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call."""

    median_ms: float
    p95_ms: float


def _sync(device: torch.device | str | None) -> None:
    # CUDA kernels run asynchronously; without a sync the clock stops before the work is done.
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    forward: Callable[[], object],
    runs: int = 50,
    *,
    warmup: int = 5,
    device: torch.device | str | None = None,
) -> Latency:
    """Time ``runs`` calls of ``forward`` after ``warmup`` untimed calls (allocators, lazy init,
    kernel selection). Pass the ``device`` the work runs on so CUDA time is counted."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"Need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}.")
    for _ in range(warmup):
        forward()
    timings = np.empty(runs)
    for i in range(runs):
        _sync(device)
        started = time.perf_counter()
        forward()
        _sync(device)
        timings[i] = (time.perf_counter() - started) * 1000
    return Latency(float(np.median(timings)), float(np.percentile(timings, 95)))
