"""Train / eval transforms as in torchvision's classification references."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

# Eval resizes the short side to input_size / 0.875 and centre-crops, the ImageNet convention
# (224 -> 256); torchvision's weights use the same ratio.
EVAL_CROP_RATIO = 0.875


def train_transform(
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    scale: Sequence[float] = (0.08, 1.0),
    hflip: bool = True,
    brightness: float = 0.0,
) -> v2.Compose:
    """RandomResizedCrop + horizontal flip (+ optional brightness jitter), then normalise."""
    steps: list[v2.Transform] = [
        v2.ToImage(),
        v2.RandomResizedCrop(input_size, scale=tuple(scale), antialias=True),
    ]
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    if brightness > 0:
        steps.append(v2.ColorJitter(brightness=brightness))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


def eval_transform(input_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Resize the short side, centre-crop ``input_size``, normalise."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(round(input_size / EVAL_CROP_RATIO), antialias=True),
            v2.CenterCrop(input_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
