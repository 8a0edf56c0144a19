"""torch.compile (inductor) vs eager for mobilenet_v3_small, inference and training."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from functools import partial

import torch
import torch._dynamo
import torch._inductor.config
import torch.nn.functional as F

from benchmarks.timing import interleaved, median, sync
from mbv3_lightning.models.registry import create_model


def _step_fn(net: torch.nn.Module, mode: str, images: torch.Tensor, labels: torch.Tensor):
    if mode == "eval":

        @torch.inference_mode()
        def step() -> None:
            net(images)

        return step
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        opt.step()

    return step


def _timed(step: Callable[[], None], device: str) -> float:
    """Seconds for one call of ``step``, queued GPU work included."""
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def _measure(mode: str, size: int, batch: int, steps: int, device: str) -> dict:
    """Eager and compiled copies of one network, their steps alternated one by one.

    The compile time is the first compiled call minus a steady one, with inductor's caches
    off, i.e. what a user's first run pays (a warm cache made it look 2-3 s).
    """
    torch.manual_seed(0)
    net = create_model("mobilenet_v3_small", 10).to(device, memory_format=torch.channels_last)
    net.train(mode == "train")
    twin = copy.deepcopy(net)
    images = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    labels = torch.randint(0, 10, (batch,), device=device)
    eager = _step_fn(net, mode, images, labels)
    compiled = _step_fn(torch.compile(twin), mode, images, labels)
    eager()
    torch._dynamo.reset()
    with torch._inductor.config.patch(force_disable_caches=True):
        first = _timed(compiled, device)
    times = interleaved(
        {"eager": partial(_timed, eager, device), "compiled": partial(_timed, compiled, device)},
        repeats=steps,
    )
    return {
        "eager_s": median(times["eager"]),
        "compiled_s": median(times["compiled"]),
        "compile_s": first - median(times["compiled"]),
    }


def run(device: str, quick: bool) -> dict:
    rows = []
    for mode, batch in (("eval", 32), ("train", 32)):
        result = _measure(mode, 224, batch, 4 if quick else 12, device)
        rows.append(
            {
                "model": "mobilenet_v3_small",
                "mode": mode,
                "batch": batch,
                "input_size": 224,
                "eager_img_s": round(batch / result["eager_s"], 1),
                "compiled_img_s": round(batch / result["compiled_s"], 1),
                "speedup": round(result["eager_s"] / result["compiled_s"], 2),
                "compile_time_s": round(result["compile_s"], 1),
            }
        )
    best = max(r["speedup"] for r in rows)
    return {
        "title": "torch.compile (inductor) vs eager, channels_last",
        "goal": "report the speed-up and the compile time; use it where it helps",
        "ratio": best,
        "met": None,
        "rows": rows,
    }
