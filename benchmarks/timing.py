"""Helpers for side-by-side measurements: interleaved repeats so variants share the noise.

Single-call latency (median/p95) is `mbv3_lightning.perf.latency.measure_latency`, the project's
one timing primitive.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch


def sync(device: str) -> None:
    """Wait for queued GPU work so wall-clock times are real."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def mixed_precision(device: str, precision: str | None) -> AbstractContextManager:
    """The autocast Lightning's ``trainer.precision`` puts around the forward pass and the
    loss, for the benchmarks' bare loops: bf16 for ``bf16-mixed`` (and ``bf16``), nothing for
    full precision (``None``, ``32...``, ``64...``)."""
    if precision is None or precision.startswith(("32", "64")):
        return contextlib.nullcontext()
    if precision in ("bf16-mixed", "bf16"):
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    raise ValueError(
        f"precision {precision!r}: the benchmarks' bare loops mirror 'bf16-mixed' or full "
        "precision only (fp16 would need a GradScaler); set trainer.precision in "
        "conf/trainer/gpu.yaml."
    )


def time_steps(step: Callable[[], None], steps: int, device: str, warmup: int = 1) -> float:
    """Seconds for ``steps`` calls of ``step`` after ``warmup`` untimed ones, the device's
    queued work included."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - start


def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call every variant once per round, ``repeats`` rounds; each call returns its seconds.

    Interleaving (A, B, A, B, ...) rather than (A, A, ..., B, B, ...) spreads slow phases of a
    shared, noisy machine over all variants, so their ratios are meaningful. Every other round
    runs in reverse order (A, B, B, A, ...): whatever runs second in a round inherits a warmer
    process (allocator, caches), which made a bare loop look 10-20% slower than the same loop
    inside Lightning when it always ran first.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(repeats):
        names = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in names:
            times[name].append(variants[name]())
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)
