"""Per-device defaults: are `channels_last=auto` and `trainer=gpu`'s `benchmark: true` the
fastest choices on this device?

The training step a run takes on the device (AdamW; on CUDA in bf16 autocast, as
``trainer=gpu`` trains), for mobilenet_v3_small and mobilenet_v3_large at 224 px, batch 32 and
256 on CUDA (32 on the CPU), in every combination of memory format (contiguous,
channels_last) and, on CUDA, cudnn's algorithm search (``torch.backends.cudnn.benchmark``).
Each cell reports training images/s of every combination and the default's share of the
best; the goal is that the defaults are within 3% of the best everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
import torch.nn.functional as F

from benchmarks.timing import interleaved, median, mixed_precision, time_steps
from mbv3_lightning.models.memory_format import batch_memory_format
from mbv3_lightning.models.registry import create_model

GOAL = 0.97  # the default combination's images/s over the best one's
MODELS = ("mobilenet_v3_small", "mobilenet_v3_large")
SIZE = 224
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# What conf/trainer/gpu.yaml sets (`benchmark: true`); the CPU has no such switch.
CUDNN_BENCHMARK_DEFAULT = True


@contextmanager
def _cudnn_benchmark(enabled: bool) -> Iterator[None]:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _train_seconds(
    name: str, fmt: str, cudnn_benchmark: bool, batch: int, steps: int, device: str
) -> float:
    """Seconds for ``steps`` training steps after two warm-up steps (cudnn's search, if on,
    happens in the first)."""
    on_cuda = device.startswith("cuda")
    memory_format = FORMATS[fmt]
    with _cudnn_benchmark(cudnn_benchmark):
        torch.manual_seed(0)
        net = create_model(name, 10).to(device, memory_format=memory_format).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        images = torch.randn(batch, 3, SIZE, SIZE, device=device)
        images = images.contiguous(memory_format=memory_format)
        labels = torch.randint(0, 10, (batch,), device=device)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with mixed_precision(device, "bf16-mixed" if on_cuda else None):
                loss = F.cross_entropy(net(images), labels)
            loss.backward()
            opt.step()

        return time_steps(step, steps, device, warmup=2)


def _variants(device: str) -> list[tuple[str, bool]]:
    """(memory format, cudnn.benchmark) combinations worth measuring on ``device``."""
    benchmarks = (False, True) if device.startswith("cuda") else (False,)
    return [(fmt, flag) for fmt in FORMATS for flag in benchmarks]


def _label(fmt: str, cudnn_benchmark: bool) -> str:
    return f"{fmt} + cudnn.benchmark" if cudnn_benchmark else fmt


def run(device: str, quick: bool) -> dict:
    on_cuda = device.startswith("cuda")
    default_format = batch_memory_format("auto", device)
    default = (
        next(name for name, fmt in FORMATS.items() if fmt == default_format),
        CUDNN_BENCHMARK_DEFAULT and on_cuda,
    )
    batches = (32, 256) if on_cuda else (32,)
    # GPU steps of these networks take milliseconds: enough of them for about a second a run
    steps = (40 if quick else 100) if on_cuda else (2 if quick else 4)
    models = MODELS if on_cuda or not quick else MODELS[:1]
    rows = []
    for name in models:
        for batch in batches:
            variants = _variants(device)
            times = interleaved(
                {
                    _label(fmt, flag): partial(
                        _train_seconds, name, fmt, flag, batch, steps, device
                    )
                    for fmt, flag in variants
                },
                repeats=2 if quick else 4,  # even: each variant runs first equally often
            )
            img_s = {label: batch * steps / median(t) for label, t in times.items()}
            best = max(img_s, key=img_s.__getitem__)
            default_label = _label(*default)
            rows.append(
                {
                    "model": name,
                    "batch": batch,
                    **{f"{label} img/s": round(value, 1) for label, value in img_s.items()},
                    "fastest": best,
                    "default": default_label,
                    "default_share_of_best": round(img_s[default_label] / img_s[best], 3),
                }
            )
    worst = min(row["default_share_of_best"] for row in rows)
    return {
        "title": "Per-device defaults: memory format and cudnn.benchmark, training images/s",
        "goal": f"the default combination >= {GOAL} of the fastest in every cell",
        "ratio": worst,
        "met": worst >= GOAL,
        "rows": rows,
    }
