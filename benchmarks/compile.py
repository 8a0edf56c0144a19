"""Goal 4: torch.compile (inductor) vs eager for mobilenet_v3_small, inference and training."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from benchmarks.timing import median, sync
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


def _measure(compiled: bool, mode: str, size: int, batch: int, steps: int, device: str) -> dict:
    torch.manual_seed(0)
    net = create_model("mobilenet_v3_small", 10).to(device, memory_format=torch.channels_last)
    net.train(mode == "train")
    images = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    labels = torch.randint(0, 10, (batch,), device=device)
    model = torch.compile(net) if compiled else net
    step = _step_fn(model, mode, images, labels)
    sync(device)
    start = time.perf_counter()
    step()  # compiles on the first call
    sync(device)
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"first_s": first, "step_s": median(times)}


def run(device: str, quick: bool) -> dict:
    rows = []
    for mode, batch in (("eval", 32), ("train", 32)):
        steps = 3 if quick else 6
        eager = _measure(False, mode, 224, batch, steps, device)
        compiled = _measure(True, mode, 224, batch, steps, device)
        rows.append(
            {
                "model": "mobilenet_v3_small",
                "mode": mode,
                "batch": batch,
                "input_size": 224,
                "eager_img_s": round(batch / eager["step_s"], 1),
                "compiled_img_s": round(batch / compiled["step_s"], 1),
                "speedup": round(eager["step_s"] / compiled["step_s"], 2),
                "compile_time_s": round(compiled["first_s"] - compiled["step_s"], 1),
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
