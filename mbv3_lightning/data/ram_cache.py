"""``dataset.cache=true``: decode and shrink every image once, keep the pixels in RAM.

For small datasets decoding dominates an epoch on CPU. Images are decoded once (threads, in
the main process, before the loader workers fork, so the workers share the memory
copy-on-write) and shrunk so their short side equals the eval resize; the transforms still
run per item, so augmentation stays random.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from mbv3_lightning.data.images import (
    CHANGED_SINCE_SCAN,
    UNREADABLE_IMAGE_ERRORS,
    UnreadableImageError,
    decode_rgb,
)
from mbv3_lightning.data.transforms import EVAL_CROP_RATIO

log = logging.getLogger(__name__)

# dataset.cache: auto (on when the decoded images fit cache_budget_mb) | true | false
CACHE_CHOICES = ("auto", True, False)


def cache_short_side(split: str, input_size: int, preprocess: str, min_crop_scale: float) -> int:
    """The short side a split's images are kept at in the RAM cache (never enlarged).

    Evaluation images at the eval resize, which is all evaluation reads. Training images large
    enough that the smallest random crop (``min_crop_scale`` of the area) still spans
    ``input_size`` pixels: a crop of a quarter of the area from an image kept at the eval
    resize was a patch half the input size, upsampled, so training saw blurrier images than a
    loader reading the files, and accuracy paid for it on real photos
    (benchmarks/accuracy.py).
    """
    if preprocess == "paper":
        return input_size
    eval_side = round(input_size / EVAL_CROP_RATIO)
    if split != "train":
        return eval_side
    return max(eval_side, math.ceil(input_size / math.sqrt(min_crop_scale)))


def cached_bytes(size: tuple[int, int] | None, short_side: int) -> int:
    """Bytes the RAM cache holds for an image of ``size`` (width, height) kept at
    ``short_side`` (never enlarged); a 4:3 image at that side if its size is unknown."""
    width, height = size or (0, 0)
    if not width or not height:
        width, height = round(short_side * 4 / 3), short_side
    factor = min(1.0, short_side / min(width, height))
    return 3 * round(width * factor) * round(height * factor)


def decode_resized(path: Path, short_side: int) -> torch.Tensor:
    """:func:`decode_rgb`, shrunk (never enlarged) so the short side is ``short_side``.

    The pixels stay in the decoder's interleaved (H, W, C) memory order behind the (3, H, W)
    view: torch's uint8 resize kernels are vectorised for that layout, and the training crop
    measured 10% faster on it than on a planar copy.
    """
    try:
        image = decode_rgb(path)
    except UNREADABLE_IMAGE_ERRORS as error:
        raise UnreadableImageError.of(path, error, CHANGED_SINCE_SCAN) from error
    if min(image.shape[-2:]) > short_side:
        image = TF.resize(image, short_side, antialias=True)  # keeps the interleaved layout
    return image


def preload(paths: Sequence[Path], short_side: int) -> dict[Path, torch.Tensor]:
    """Every distinct path decoded and resized, keyed by path."""
    unique = sorted(set(paths))
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(pool.map(lambda p: decode_resized(p, short_side), unique))
    megabytes = sum(image.numel() for image in images) / 2**20
    log.info(
        "RAM cache: %d images decoded (short side at most %d px) in %.1f s, %.0f MiB.",
        len(unique),
        short_side,
        time.perf_counter() - started,
        megabytes,
    )
    return dict(zip(unique, images, strict=True))


class InMemoryImageDataset(Dataset):
    """``(path, label)`` pairs whose decoded pixels come from a :func:`preload` dict."""

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        images: dict[Path, torch.Tensor],
        transform: Callable[[torch.Tensor], Any],
    ) -> None:
        self.samples = list(samples)
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        return self.transform(self.images[path]), label
