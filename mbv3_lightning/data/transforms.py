"""Train / eval transforms as in torchvision's classification references.

Written with torchvision's functional ops rather than ``v2.Compose``: on a 2-core CPU they run
in the training process, and at the demo's 100 px the Compose spent about 40% of its time per
image on dispatch (benchmarks/pipeline.py). The tests check they match the v2 pipelines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

# Eval resizes the short side to input_size / 0.875 and centre-crops, the ImageNet convention
# (224 -> 256); torchvision's weights use the same ratio.
EVAL_CROP_RATIO = 0.875
# dataset.preprocess: augment = RandomResizedCrop + flip for training, resize + centre crop for
# evaluation; paper = every image resized to the square input size and normalised, nothing else
# (the MobileNetV3 image-classification paper, III.A).
PREPROCESSING = ("augment", "paper")


class Normalize:
    """``uint8`` image -> float, normalised by ``mean``/``std`` (given on the 0-1 scale).

    One fused step from 0-255 values, ``(x - 255 mean) / (255 std)``, instead of a ToDtype and
    a Normalize pass.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.offset = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) * 255
        self.inv_scale = 1 / (torch.tensor(std, dtype=torch.float32).view(-1, 1, 1) * 255)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.float().sub_(self.offset).mul_(self.inv_scale)


class CropDraw(NamedTuple):
    """One training image's random augmentation: the crop box in pixels, whether it is
    mirrored, and the brightness factor (1.0 = unchanged)."""

    top: int
    left: int
    height: int
    width: int
    flip: bool
    brightness: float


class TrainTransform:
    """RandomResizedCrop + horizontal flip (+ optional brightness jitter), then normalise.

    The augmentation of torchvision's references (``v2.RandomResizedCrop``'s sampling, via
    the public ``RandomResizedCrop.get_params``), written with the functional ops on ``uint8``
    ``(3, H, W)`` tensors: at the demo's small images a ``v2.Compose`` of the same steps
    spends a large share of its time on dispatch, and on 2 cores this runs in the training
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
        self.normalize = Normalize(mean, std)

    def sample(self, image: torch.Tensor) -> CropDraw:
        """Draw this image's crop, flip and brightness, in the order ``__call__`` draws them.

        The GPU-fed pipeline (:mod:`mbv3_lightning.data.device_augment`) draws through this
        too, so both paths take the same augmentations from the same random stream.
        """
        top, left, height, width = RandomResizedCrop.get_params(image, self.scale, self.ratio)
        flip = bool(self.hflip and torch.rand(()) < 0.5)
        brightness = 1.0
        if self.brightness is not None:
            brightness = float(torch.empty(()).uniform_(*self.brightness))
        return CropDraw(top, left, height, width, flip, brightness)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        draw = self.sample(image)
        image = TF.resized_crop(
            image, draw.top, draw.left, draw.height, draw.width, self.size, antialias=True
        )
        if draw.flip:
            image = TF.horizontal_flip(image)
        if self.brightness is not None:
            image = TF.adjust_brightness(image, draw.brightness)
        return self.normalize(image)


class EvalTransform:
    """Resize the short side to ``input_size / 0.875``, centre-crop ``input_size``, normalise.

    Takes ``uint8`` ``(3, H, W)`` tensors (the DataModules) or RGB PIL images (prediction,
    the web page); PIL images are converted first, so both are resized by the same tensor
    kernel and a file gets the same pixels in ``predict`` as in evaluation.
    """

    def __init__(self, input_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.resize = round(input_size / EVAL_CROP_RATIO)
        self.crop = [input_size, input_size]
        self.normalize = Normalize(mean, std)

    def __call__(self, image: torch.Tensor | Image.Image) -> torch.Tensor:
        if isinstance(image, Image.Image):
            image = TF.pil_to_tensor(image)
        image = TF.resize(image, self.resize, antialias=True)
        return self.normalize(TF.center_crop(image, self.crop))


class SquareResize:
    """Resize to ``input_size`` x ``input_size`` (aspect ratio not kept), then normalise.

    The MobileNetV3 image-classification paper's preprocessing (its section III.A: every
    image resized to 224x224, 299x299 for InceptionV3, and normalised; no augmentation is
    mentioned), used for training and evaluation alike with ``dataset.preprocess=paper``.
    """

    def __init__(self, input_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size = [input_size, input_size]
        self.normalize = Normalize(mean, std)

    def __call__(self, image: torch.Tensor | Image.Image) -> torch.Tensor:
        if isinstance(image, Image.Image):
            image = TF.pil_to_tensor(image)
        return self.normalize(TF.resize(image, self.size, antialias=True))


def eval_transform(
    preprocess: str, input_size: int, mean: Sequence[float], std: Sequence[float]
) -> EvalTransform | SquareResize:
    """What evaluation (and so predict, export and the web page) does to an image under
    ``dataset.preprocess``: resize + centre crop (``augment``) or a square resize (``paper``)."""
    if preprocess == "paper":
        return SquareResize(input_size, mean, std)
    return EvalTransform(input_size, mean, std)
