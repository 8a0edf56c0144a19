"""Batch-1 latency of a forward pass: median and 95th percentile over timed runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

WARMUP_RUNS = 5


@dataclass(frozen=True)
class Latency:
    """Milliseconds per call."""

    median_ms: float
    p95_ms: float


def measure_latency(forward: Callable[[], object], runs: int = 50) -> Latency:
    """Time ``runs`` calls of ``forward`` after a few warm-up calls (allocators, lazy init)."""
    if runs < 1:
        raise ValueError(f"latency_runs must be >= 1, got {runs}.")
    for _ in range(WARMUP_RUNS):
        forward()
    timings = np.empty(runs)
    for i in range(runs):
        started = time.perf_counter()
        forward()
        timings[i] = (time.perf_counter() - started) * 1000
    return Latency(float(np.median(timings)), float(np.percentile(timings, 95)))
