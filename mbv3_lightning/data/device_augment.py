"""The GPU-fed training pipeline (``dataset.augment_on``): workers ship uint8 pixels, the
device crops, resizes, flips and normalises them.

On a GPU, per-image work in the loader workers (a resize, then conversion to float and
normalisation) held training well below what the same network reaches on tensors already on
the GPU. Here a worker only draws each training image's augmentation with
:meth:`TrainTransform.sample` (the CPU path's draws, from the same random stream) and places
the uint8 image, as decoded or as the RAM cache holds it, on a fixed-size canvas. Batches
travel as uint8, a quarter of the float bytes, and :class:`DeviceAugment` does the pixel work
for the whole batch on the device after the transfer: one ``roi_align`` for every sample's
crop and resize, then flip, brightness and normalisation.

The crop is resampled by ``roi_align`` (an average of bilinear samples per output pixel) where
the CPU path uses torchvision's antialiased resize: the same crop boxes, pixels that differ by
about one grey level (tested against the CPU path in tests/test_device_augment.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torchvision.ops import roi_align
from torchvision.transforms.v2 import functional as TF

from mbv3_lightning.data.transforms import TrainTransform

log = logging.getLogger(__name__)

# dataset.augment_on: where training augmentation runs: in the loader workers (cpu), on the
# training device after the transfer (device), or on the device when training runs on a GPU
# (auto).
AUGMENT_ON = ("auto", "cpu", "device")


def augments_on_device(augment_on: str, preprocess: str, device_type: str | None) -> bool:
    """Whether training batches are augmented on the device: ``auto`` means when training
    runs on a GPU (``device_type`` of the attached trainer, None without one).

    Only ``preprocess=augment`` has augmentation to move; evaluation batches are always
    prepared in the workers (the test report, the speed measurement and the W&B predictions
    read them as they are).
    """
    if preprocess != "augment":
        if augment_on == "device":
            log.warning(
                "dataset.augment_on=device has no effect with dataset.preprocess=%s: there "
                "is no training augmentation to move; images are prepared in the workers.",
                preprocess,
            )
        return False
    if augment_on == "cpu":
        return False
    return augment_on == "device" or device_type == "cuda"


# A canvas holds images up to this aspect ratio at the full short side (4:3 photos and
# squares); a longer image is shrunk until it fits.
CANVAS_ASPECT = 4 / 3
# box = [x1, y1, x2, y2, flip, brightness]
BOX_FIELDS = 6


def canvas_side(short_side: int, image_sizes: Sequence[tuple[int, int]]) -> int:
    """The square canvas side for training images kept at ``short_side`` (never enlarged):
    the longest side any of them has after that shrink, at most ``short_side * 4/3``."""
    cap = round(short_side * CANVAS_ASPECT)
    longest = 0
    for width, height in image_sizes:
        factor = min(1.0, short_side / max(1, min(width, height)))
        longest = max(longest, round(max(width, height) * factor))
    return min(cap, longest) if longest else cap


class CanvasTransform:
    """The workers' half: draw the augmentation, place the uint8 image on a square canvas.

    Returns ``(canvas, box)``: ``canvas`` is ``(side, side, 3)`` uint8 (pixel-interleaved, so
    placing an image and batching are plain memory copies), the image at the top left, one
    replicated row and column past its edges (interpolation at the crop border then reads
    image pixels, as the CPU resize's edge clamping does) and zeros beyond. ``box`` is float32
    ``[x1, y1, x2, y2, flip, brightness]``, the crop in canvas pixels. The draw is made on the
    image as it arrives, as the CPU path draws it; an image still larger than ``short_side``
    (short side) or the canvas (long side) is shrunk after the draw and the box with it, so the
    crop covers the same part of the picture.
    """

    def __init__(self, train: TrainTransform, short_side: int, side: int) -> None:
        self.train = train
        self.short_side = short_side
        self.side = side

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        draw = self.train.sample(image)
        height, width = image.shape[-2:]
        factor = min(1.0, self.short_side / min(height, width), self.side / max(height, width))
        if factor < 1.0:
            size = [max(1, round(height * factor)), max(1, round(width * factor))]
            image = TF.resize(image, size, antialias=True)
        new_height, new_width = image.shape[-2:]
        scale_y, scale_x = new_height / height, new_width / width
        pixels = image.permute(1, 2, 0)  # (H, W, 3) view
        canvas = torch.zeros(self.side, self.side, 3, dtype=torch.uint8)
        canvas[:new_height, :new_width] = pixels
        if new_width < self.side:
            canvas[:new_height, new_width] = pixels[:, -1]
        if new_height < self.side:
            canvas[new_height, : min(new_width + 1, self.side)] = canvas[
                new_height - 1, : new_width + 1
            ]
        box = torch.tensor(
            [
                draw.left * scale_x,
                draw.top * scale_y,
                (draw.left + draw.width) * scale_x,
                (draw.top + draw.height) * scale_y,
                float(draw.flip),
                draw.brightness,
            ],
            dtype=torch.float32,
        )
        return canvas, box


class DeviceAugment:
    """The device's half: every sample's crop resized to ``input_size``, flipped, brightened
    and normalised, as :class:`TrainTransform` does on the CPU, for a whole batch at once.

    Runs on whatever device the batch is on (the CPU in tests), in float32.
    """

    def __init__(self, input_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size = (input_size, input_size)
        self.offset = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.inv_scale = 1 / (torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)

    def __call__(self, canvases: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """``canvases`` ``(N, side, side, 3)`` uint8 and ``boxes`` ``(N, 6)`` from
        :class:`CanvasTransform`, collated -> ``(N, 3, input_size, input_size)`` float32."""
        if canvases.dtype != torch.uint8 or canvases.ndim != 4 or boxes.shape[-1] != BOX_FIELDS:
            raise ValueError(
                "DeviceAugment takes the (canvas, box) batches of CanvasTransform: uint8 "
                f"(N, side, side, 3) and (N, {BOX_FIELDS}); got {canvases.dtype} "
                f"{tuple(canvases.shape)} and {tuple(boxes.shape)}."
            )
        images = canvases.permute(0, 3, 1, 2).float().contiguous()
        index = torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)
        rois = torch.cat([index[:, None], boxes[:, :4]], dim=1)
        # aligned=True: box edges are pixel edges, as in the CPU crop; sampling_ratio=-1
        # averages ceil(crop / output) samples per output pixel and bin, which filters a
        # shrinking crop as the antialiased resize does.
        crops = roi_align(
            images, rois, self.size, spatial_scale=1.0, sampling_ratio=-1, aligned=True
        )
        flip = boxes[:, 4].view(-1, 1, 1, 1) > 0.5
        crops = torch.where(flip, crops.flip(-1), crops)
        crops = crops.mul_(boxes[:, 5].view(-1, 1, 1, 1)).clamp_(0, 255)
        offset = self.offset.to(crops.device)
        inv_scale = self.inv_scale.to(crops.device)
        return crops.sub_(offset).mul_(inv_scale)
