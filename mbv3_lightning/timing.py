"""Test-time speed, as papers report it: ms per image at batch 1 and images/s in batches.

Both are measured on real, preprocessed test images after a warm-up (the first passes pay for
memory allocation and kernel selection), with gradients off and the network in eval mode.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


def _sync(device: torch.device) -> None:
    # CUDA kernels run asynchronously; without a sync the clock stops before the work is done.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(net: nn.Module, batch: torch.Tensor, device: torch.device) -> float:
    _sync(device)
    started = time.perf_counter()
    net(batch)
    _sync(device)
    return time.perf_counter() - started


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
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    images = images.to(device)
    try:
        singles = [images[i % len(images)].unsqueeze(0) for i in range(warmup + repeats)]
        for single in singles[:warmup]:
            _timed(net, single, device)
        single_s = np.array([_timed(net, single, device) for single in singles[warmup:]])
        _timed(net, images, device)  # warm-up at the batch size
        batch_s = np.median([_timed(net, images, device) for _ in range(batch_repeats)])
    finally:
        net.train(was_training)
    return {
        "test_ms_per_image": {
            "median": round(float(np.median(single_s)) * 1000, 3),
            "p95": round(float(np.percentile(single_s, 95)) * 1000, 3),
        },
        "test_images_per_s": round(len(images) / float(batch_s), 1),
        "test_timing_batch_size": len(images),
    }
