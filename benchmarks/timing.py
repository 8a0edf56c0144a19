"""Timing helpers: interleaved repeats so two variants see the same machine noise."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: str) -> None:
    """Wait for queued GPU work so wall-clock times are real."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str = "cpu") -> float:
    """Seconds one call of ``fn`` takes."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call every variant once per round, ``repeats`` rounds; each call returns its seconds.

    Interleaving (A, B, A, B, ...) rather than (A, A, ..., B, B, ...) spreads slow phases of a
    shared, noisy machine over all variants, so their ratios are meaningful.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(fn())
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_ms(fn: Callable[[], object], runs: int, warmup: int, device: str = "cpu") -> dict:
    """Median and p95 latency in milliseconds over ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = [timed(fn, device) * 1000 for _ in range(runs)]
    return {"median_ms": round(median(samples), 3), "p95_ms": round(percentile(samples, 95), 3)}
