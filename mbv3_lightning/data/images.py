"""Reading images from disk the same way everywhere (training, evaluation, prediction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as 8-bit RGB, upright.

    Respects EXIF orientation (phone photos), and flattens transparency onto white rather
    than letting ``convert("RGB")`` expose whatever colour hides under transparent pixels.
    Greyscale, CMYK and palette images become RGB.
    """
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode in ("RGBA", "LA", "PA"):
            img = img.convert("RGBA")
            background = Image.new("RGB", img.size, (255, 255, 255))
            background.paste(img, mask=img.getchannel("A"))
            return background
        return img.convert("RGB")


class ImageListDataset(Dataset):
    """``(path, label)`` pairs read with :func:`load_rgb` and passed through ``transform``."""

    def __init__(
        self, samples: Sequence[tuple[Path, int]], transform: Callable[[Image.Image], Any]
    ) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        return self.transform(load_rgb(path)), label
