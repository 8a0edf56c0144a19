"""Test-time speed, as papers report it: ms per image at batch 1 and images/s in batches.

Both are measured on real, preprocessed test images after a warm-up (the first passes pay for
memory allocation and kernel selection), with gradients off and the network in eval mode.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from mbv3_lightning.models.complexity import complexity
from mbv3_lightning.perf.latency import measure_latency


def _device(net: nn.Module) -> torch.device:
    """Where ``net`` runs: its parameters' device; the CPU for a parameter-free wrapper of
    an exported model (its runtime runs on the CPU)."""
    return next(net.parameters(), torch.empty(0)).device


def _memory_format(net: nn.Module) -> torch.memory_format:
    """The layout the network's convolution weights are in (NCHW or channels_last)."""
    weight = next((p for p in net.parameters() if p.ndim == 4), None)
    if (
        weight is not None
        and not weight.is_contiguous()
        and weight.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


@torch.inference_mode()
def time_inference(
    net: nn.Module,
    images: torch.Tensor,
    *,
    warmup: int = 5,
    repeats: int = 30,
    batch_repeats: int = 3,
) -> dict[str, object]:
    """``test_ms_per_image`` (median and p95 over ``repeats`` single-image passes) and
    ``test_images_per_s`` (the whole ``images`` batch, median of ``batch_repeats`` passes).

    ``images`` is one batch of the test loader, so its size is the eval batch size; the
    passes run on the device ``net`` is on.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"Expected a non-empty batch of images (N, C, H, W), got {images.shape}.")
    if warmup < 1 or repeats < 1 or batch_repeats < 1:
        raise ValueError("timing.warmup, timing.repeats and timing.batch_repeats must be >= 1.")
    device = _device(net)
    was_training = net.training
    net.eval()
    # The layout the network was trained in: channels_last was faster here at batch 1 too
    # (benchmarks/, memory format table), so single images use it as well.
    layout = _memory_format(net)
    images = images.to(device).contiguous(memory_format=layout)
    try:
        singles = itertools.cycle(
            images[i].unsqueeze(0).contiguous(memory_format=layout) for i in range(len(images))
        )
        single = measure_latency(lambda: net(next(singles)), repeats, warmup=warmup, device=device)
        batch = measure_latency(lambda: net(images), batch_repeats, warmup=1, device=device)
    finally:
        net.train(was_training)
    return {
        "test_ms_per_image": {
            "median": round(single.median_ms, 3),
            "p95": round(single.p95_ms, 3),
        },
        "test_images_per_s": round(len(images) / (batch.median_ms / 1000), 1),
        "test_timing_batch_size": len(images),
    }


@torch.inference_mode()
def time_test_set(net: nn.Module, batches: Iterable[Any]) -> dict[str, Any]:
    """Test time as the MobileNetV3 image-classification paper defines it (its section
    III.D.2 and Fig 10): the time to predict the whole test set divided by its image count.

    One pass over ``batches`` (the test loader: ``(images, labels)``), loading and
    preprocessing included, as a user predicting the set would wait for them; eval mode, no
    gradients, on the device ``net`` is on.
    """
    device = _device(net)
    layout = _memory_format(net)
    was_training = net.training
    net.eval()
    count = 0
    try:
        started = time.perf_counter()
        for images, *_ in batches:
            net(images.to(device).contiguous(memory_format=layout)).argmax(dim=1).cpu()
            count += len(images)
        elapsed = time.perf_counter() - started
    finally:
        net.train(was_training)
    if count == 0:
        raise ValueError("The test set is empty: there is no test time to measure.")
    return {
        "test_set_ms_per_image": round(1000 * elapsed / count, 3),
        "test_set_time_s": round(elapsed, 6),  # to the microsecond: a small test set takes ms
        "test_set_images": count,
    }


def model_cost(
    net: torch.nn.Module,
    input_size: int,
    test_images: torch.Tensor | None,
    timing: dict[str, Any] | None = None,
    test_batches: Iterable[Any] | None = None,
    count_complexity: bool = True,
) -> dict[str, Any]:
    """``params``/``macs``/``flops`` and, given a test batch, the test-time speed on the
    device ``net`` is on (``timing``: overrides of :func:`time_inference`'s repeat counts);
    given the whole test loader (``test_batches``), the paper's test time per image too.
    ``count_complexity=False`` (an exported model's runtime wrapper) times it only."""
    cost: dict[str, Any] = (
        {**complexity(net, input_size)}
        if count_complexity
        else {"params": None, "macs": None, "flops": None}
    )
    if test_images is None:
        return {**cost, "test_ms_per_image": None, "test_images_per_s": None}
    cost.update(time_inference(net, test_images, **(timing or {})))
    if test_batches is not None:
        cost.update(time_test_set(net, test_batches))
    return cost
