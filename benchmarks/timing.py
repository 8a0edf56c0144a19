"""Helpers for side-by-side measurements: interleaved repeats so variants share the noise.

Single-call latency (median/p95) is `mbv3_lightning.latency.measure_latency`, the project's
one timing primitive.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch


def sync(device: str) -> None:
    """Wait for queued GPU work so wall-clock times are real."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


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
