"""Reading images from disk the same way everywhere (training, evaluation, prediction)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

try:
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
except ImportError:  # torchvision 0.29 deprecated its decoders; a later release may drop them
    decode_jpeg = None

log = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8"

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


# What opening a bad image can raise: PIL's own errors (unknown format, a decompression bomb, i.e.
# more pixels than Image.MAX_IMAGE_PIXELS allows), truncation (OSError), broken headers
# (SyntaxError, ValueError) and names the file system cannot encode (UnicodeError).
UNREADABLE_IMAGE_ERRORS: tuple[type[BaseException], ...] = (
    Image.UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    ValueError,
    SyntaxError,
    UnicodeError,
)


def is_image_file(path: Path) -> bool:
    """An image by its extension, with a name the rest of the job can print and store.

    A name that is not valid UTF-8 (copied from an old file system) reaches Python as
    surrogate escapes that no log, CSV or JSON can encode; it is skipped with a warning here,
    where every scan (training, predict, check, export) lists its files.
    """
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return False
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        log.warning(
            "Skipping %s: its name is not valid UTF-8; rename the file to use it.", ascii(str(path))
        )
        return False
    return True


class UnreadableImageError(OSError):
    """An image file could not be read; the message names it and says why (one argument, so
    a DataLoader worker can re-raise it in the training process)."""

    @classmethod
    def of(cls, path: object, cause: BaseException, hint: str = "") -> UnreadableImageError:
        reason = f"{type(cause).__name__}: {cause}"
        return cls(f"Cannot read image '{path}' ({reason}).{' ' + hint if hint else ''}")


# A training image that fails to load passed the decode check of the dataset scan.
CHANGED_SINCE_SCAN = (
    "It was readable when the dataset was scanned, so it changed since: restore or remove it "
    "and run again (a run with a last.ckpt resumes from it)."
)


def load_rgb(path: str | Path | IO[bytes]) -> Image.Image:
    """Open an image as 8-bit RGB, upright; an :class:`UnreadableImageError` naming the file if
    it cannot be read.

    Respects EXIF orientation (phone photos), and flattens transparency onto white rather
    than letting ``convert("RGB")`` expose whatever colour hides under transparent pixels.
    Greyscale, CMYK and palette images become RGB.
    """
    try:
        return _load_rgb(path)
    except UnreadableImageError:
        raise
    except UNREADABLE_IMAGE_ERRORS as error:
        raise UnreadableImageError.of(path, error) from error


def _load_rgb(path: str | Path | IO[bytes]) -> Image.Image:
    with Image.open(path) as opened:
        img: Image.Image = ImageOps.exif_transpose(opened)
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode in ("RGBA", "LA", "PA"):
            img = img.convert("RGBA")
            background = Image.new("RGB", img.size, (255, 255, 255))
            background.paste(img, mask=img.getchannel("A"))
            return background
        return img.convert("RGB")


def decode_rgb(path: str | Path) -> torch.Tensor:
    """Decode an image to a ``uint8`` RGB tensor ``(3, H, W)``, upright.

    JPEG (recognised by content, not by name) goes through ``torchvision.io.decode_jpeg``:
    faster than PIL (README, "Speed and balance options"), and pixel-identical to :func:`load_rgb`
    for RGB, greyscale and CMYK JPEGs. Every other format, and any JPEG libjpeg rejects,
    takes the PIL path, which also flattens transparency onto white.
    """
    with open(path, "rb") as f:
        is_jpeg = f.read(2) == JPEG_MAGIC
    if is_jpeg and decode_jpeg is not None:
        try:
            with warnings.catch_warnings():
                # torchvision 0.29 deprecates its decoders in favour of TorchCodec; until that
                # is a dependency here, this is still the fastest JPEG path (see docstring).
                warnings.simplefilter("ignore", DeprecationWarning)
                data = read_file(str(path))
                return decode_jpeg(data, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        except RuntimeError:
            pass  # e.g. arithmetic coding or a 12-bit JPEG: PIL reads more variants
    return TF.pil_to_tensor(_load_rgb(path))


@dataclass(frozen=True)
class ImageInfo:
    """What a scan learns about one file: its size and colour mode, or why it is unreadable."""

    width: int = 0
    height: int = 0
    mode: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# The scan decodes JPEGs at 1/8 scale: libjpeg still reads every byte, so truncation is still
# caught, at a fraction of the cost of a full decode on multi-megapixel photos.
_SCAN_DRAFT_SIZE = (64, 64)


def inspect_image(path: str | Path) -> ImageInfo:
    """Fully decode ``path`` to prove it is readable.

    ``Image.open`` only parses the header, so a truncated JPEG "opens" fine and fails in the
    middle of an epoch; ``load()`` decodes every byte and raises on truncation.
    """
    try:
        with Image.open(path) as img:
            width, height, mode = img.width, img.height, img.mode
            img.draft("RGB", _SCAN_DRAFT_SIZE)
            img.load()
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return ImageInfo(error=f"{type(exc).__name__}: {exc}")
    return ImageInfo(width, height, mode)


class ImageListDataset(Dataset):
    """``(path, label)`` pairs read with :func:`decode_rgb` and passed through ``transform``."""

    def __init__(
        self, samples: Sequence[tuple[Path, int]], transform: Callable[[torch.Tensor], Any]
    ) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, label = self.samples[index]
        try:
            image = decode_rgb(path)
        except UNREADABLE_IMAGE_ERRORS as error:
            raise UnreadableImageError.of(path, error, CHANGED_SINCE_SCAN) from error
        return self.transform(image), label
