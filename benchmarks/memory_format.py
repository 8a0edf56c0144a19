"""Goal 3: channels_last vs contiguous (NCHW) for every registry model, training and inference."""

from __future__ import annotations

import time
from functools import partial

import torch
import torch.nn.functional as F

from benchmarks.timing import interleaved, median, sync
from mbv3_lightning.models.registry import create_model, get_spec, list_models

GOAL = 1.8  # mobilenet_v3_small training at 224 px on CPU
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def steps_seconds(name: str, fmt: str, mode: str, batch: int, steps: int, device: str) -> float:
    """Seconds for ``steps`` training steps or inference batches after one warm-up step."""
    torch.manual_seed(0)
    size = get_spec(name).input_size
    memory_format = FORMATS[fmt]
    net = create_model(name, 10).to(device, memory_format=memory_format)
    images = torch.randn(batch, 3, size, size, device=device).contiguous(
        memory_format=memory_format
    )
    labels = torch.randint(0, 10, (batch,), device=device)
    if mode == "train":
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            out = net(images)
            logits = out[0] if isinstance(out, tuple) else out  # inception's aux output
            F.cross_entropy(logits, labels).backward()
            opt.step()
    else:
        net.eval()

        @torch.inference_mode()
        def step() -> None:
            net(images)

    step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - start


def run(device: str, quick: bool) -> dict:
    rows = []
    models = ["mobilenet_v3_small"] if quick else list_models()
    for name in models:
        for mode, batch, steps in (("train", 16, 3), ("eval", 32, 3), ("eval", 1, 20)):
            times = interleaved(
                {
                    fmt: partial(steps_seconds, name, fmt, mode, batch, steps, device)
                    for fmt in FORMATS
                },
                repeats=2,
            )
            contiguous, channels_last = (median(times[f]) for f in FORMATS)
            rows.append(
                {
                    "model": name,
                    "mode": mode,
                    "batch": batch,
                    "input_size": get_spec(name).input_size,
                    "contiguous_img_s": round(batch * steps / contiguous, 1),
                    "channels_last_img_s": round(batch * steps / channels_last, 1),
                    "speedup": round(contiguous / channels_last, 2),
                }
            )
    key = next(r for r in rows if r["model"] == "mobilenet_v3_small" and r["mode"] == "train")
    return {
        "title": "Memory format: channels_last speed-up over contiguous (images/s)",
        "goal": f"mobilenet_v3_small train speed-up >= {GOAL}x",
        "ratio": key["speedup"],
        "met": key["speedup"] >= GOAL,
        "rows": rows,
    }
