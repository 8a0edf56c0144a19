"""Train / eval transforms as in torchvision's classification references."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import RandomResizedCrop, v2
from torchvision.transforms.v2 import functional as TF

# Eval resizes the short side to input_size / 0.875 and centre-crops, the ImageNet convention
# (224 -> 256); torchvision's weights use the same ratio.
EVAL_CROP_RATIO = 0.875


class TrainTransform:
    """RandomResizedCrop + horizontal flip (+ optional brightness jitter), then normalise.

    The augmentation of torchvision's references (``v2.RandomResizedCrop``'s sampling, via
    the public ``RandomResizedCrop.get_params``), written with the functional ops on ``uint8``
    ``(3, H, W)`` tensors: at the demo's 100 px a ``v2.Compose`` of the same steps spent
    about 40% of its 0.26 ms per image on dispatch, and on 2 cores this runs in the training
    process (benchmarks/pipeline.py). A plain class, so loader workers can pickle it.
    """

    def __init__(
        self,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        scale: Sequence[float] = (0.08, 1.0),
        hflip: bool = True,
        brightness: float = 0.0,
    ) -> None:
        self.size = [input_size, input_size]
        self.scale = tuple(scale)
        self.ratio = (3 / 4, 4 / 3)  # torchvision's default aspect-ratio range
        self.hflip = hflip
        self.brightness = (max(0.0, 1.0 - brightness), 1.0 + brightness) if brightness else None
        # Normalising in one fused step from 0-255: (x - 255 mean) / (255 std).
        self.offset = torch.tensor(mean).view(3, 1, 1) * 255
        self.inv_scale = 1 / (torch.tensor(std).view(3, 1, 1) * 255)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        top, left, height, width = RandomResizedCrop.get_params(image, self.scale, self.ratio)
        image = TF.resized_crop(image, top, left, height, width, self.size, antialias=True)
        if self.hflip and torch.rand(()) < 0.5:
            image = TF.horizontal_flip(image)
        if self.brightness is not None:
            factor = float(torch.empty(()).uniform_(*self.brightness))
            image = TF.adjust_brightness(image, factor)
        return image.float().sub_(self.offset).mul_(self.inv_scale)


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
