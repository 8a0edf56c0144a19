"""channels_last vs contiguous (NCHW) for every registry model, training and inference."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from benchmarks.timing import interleaved, median, sync, time_steps
from mbv3_lightning.models.registry import create_model, get_spec, list_models

GOAL = 1.8  # GOAL_MODEL training at 224 px on CPU
GOAL_MODEL = "mobilenet_v3_small"
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def make_step(name: str, fmt: str, mode: str, batch: int, device: str) -> Callable[[], None]:
    """One training step (SGD, cross-entropy) or one inference batch of ``name`` in ``fmt``."""
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

        return step
    net.eval()

    @torch.inference_mode()
    def infer() -> None:
        net(images)

    return infer


def steps_seconds(name: str, fmt: str, mode: str, batch: int, steps: int, device: str) -> float:
    """Seconds for ``steps`` training steps or inference batches after one warm-up step."""
    return time_steps(make_step(name, fmt, mode, batch, device), steps, device)


# torch.profiler operator names -> what they compute; the first matching pattern wins.
OP_CATEGORIES = (
    ("convolution backward", ("convolution_backward",)),
    ("convolution forward", ("convolution", "conv2d")),
    ("batch norm backward", ("batch_norm_backward",)),
    ("batch norm forward", ("batch_norm",)),
    (
        "activations, SE, element-wise",
        ("hardswish", "hardsigmoid", "relu", "threshold", "clamp", "mul", "add", "div", "mean"),
    ),
)


def op_breakdown(name: str, mode: str, batch: int, steps: int, device: str) -> list[dict]:
    """Milliseconds per step by operator category, contiguous vs channels_last (torch.profiler).

    Shows where a format wins or loses, e.g. faster convolutions but a slower NHWC batch-norm
    backward, which together decide the overall speed-up. On a GPU each operator counts the
    device time of the kernels it launched itself (``self_device_time_total``), so categories
    follow operator names on both devices; the kernels' own events, which repeat that time
    under cuDNN's or Triton's names, are skipped.
    """
    per_format: dict[str, dict[str, float]] = {}
    for fmt in FORMATS:
        step = make_step(name, fmt, mode, batch, device)
        step()
        with profile(activities=[ProfilerActivity.CPU, *_device_activity(device)]) as prof:
            for _ in range(steps):
                step()
            sync(device)
        totals: dict[str, float] = {}
        for event in prof.key_averages():
            if device != "cpu" and event.device_type != DeviceType.CPU:
                continue  # a kernel: already counted as its operator's self device time
            us = event.self_device_time_total if device != "cpu" else event.self_cpu_time_total
            category = next(
                (c for c, patterns in OP_CATEGORIES if any(p in event.key for p in patterns)),
                "other",
            )
            totals[category] = totals.get(category, 0.0) + us / 1000 / steps
        per_format[fmt] = totals
    categories = [c for c, _ in OP_CATEGORIES] + ["other"]
    rows = []
    for category in [*categories, "total"]:
        ms = {
            fmt: sum(t.values()) if category == "total" else t.get(category, 0.0)
            for fmt, t in per_format.items()
        }
        rows.append(
            {
                "operators": category,
                "contiguous_ms": round(ms["contiguous"], 1),
                "channels_last_ms": round(ms["channels_last"], 1),
                "speedup": round(ms["contiguous"] / ms["channels_last"], 2)
                if ms["channels_last"]
                else "",
            }
        )
    return rows


def _device_activity(device: str) -> list[ProfilerActivity]:
    return [ProfilerActivity.CUDA] if device.startswith("cuda") else []


def _cases(name: str) -> tuple[tuple[str, int, int, int], ...]:
    """(mode, batch, steps, repeats) per model; the goal's model gets longer, steadier runs.

    Repeats are even so each format runs first in a round equally often (see interleaved).
    """
    if name == GOAL_MODEL:
        return (("train", 32, 8, 4), ("eval", 32, 6, 4), ("eval", 1, 40, 4))
    return (("train", 16, 3, 2), ("eval", 32, 3, 2), ("eval", 1, 20, 2))


def run(device: str, quick: bool) -> dict:
    rows = []
    models = [GOAL_MODEL] if quick else list_models()
    for name in models:
        for mode, batch, steps, repeats in _cases(name):
            times = interleaved(
                {
                    fmt: partial(steps_seconds, name, fmt, mode, batch, steps, device)
                    for fmt in FORMATS
                },
                repeats=repeats,
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
    key = next(r for r in rows if r["model"] == GOAL_MODEL and r["mode"] == "train")
    return {
        "title": "Memory format: channels_last speed-up over contiguous (images/s)",
        "goal": f"{GOAL_MODEL} train speed-up >= {GOAL}x",
        "ratio": key["speedup"],
        "met": key["speedup"] >= GOAL,
        "rows": rows,
        "tables": [
            {
                "title": f"Where a {GOAL_MODEL} training step (batch {key['batch']}) spends its"
                " time, by operator (torch.profiler, self time per step)",
                "rows": op_breakdown(GOAL_MODEL, "train", key["batch"], 4, device),
            }
        ],
    }
