"""Train/eval transforms: torchvision's reference pipelines, written for speed, same output."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from mbv3_lightning.data.transforms import EvalTransform, TrainTransform

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _image(height: int = 120, width: int = 90) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)


def test_matches_the_torchvision_v2_pipeline_for_the_same_seed():
    reference = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(64, scale=(0.25, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )
    fast = TrainTransform(64, MEAN, STD, scale=(0.25, 1.0))
    image = _image()
    for seed in range(8):  # covers flipped and unflipped draws
        torch.manual_seed(seed)
        expected = reference(image)
        torch.manual_seed(seed)
        actual = fast(image)
        assert actual.shape == (3, 64, 64) and actual.dtype == torch.float32
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


def test_flip_and_crop_can_be_turned_off():
    image = _image(64, 64)
    # scale (1, 1) with a square image: the crop is the whole image, no resampling.
    transform = TrainTransform(64, MEAN, STD, scale=(1.0, 1.0), hflip=False)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    expected = (image.float() / 255 - mean) / std
    for seed in range(4):
        torch.manual_seed(seed)
        torch.testing.assert_close(transform(image), expected, atol=1e-5, rtol=0)


def test_brightness_scales_pixels_within_the_jitter_range():
    image = torch.full((3, 32, 32), 100, dtype=torch.uint8)
    transform = TrainTransform(32, (0.0,) * 3, (1.0,) * 3, scale=(1.0, 1.0), brightness=0.5)
    values = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out = transform(image) * 255  # mean 0, std 1: back to 0-255 pixel values
        assert out.std() == pytest.approx(0.0, abs=1e-4)  # a uniform image stays uniform
        values.add(round(float(out[0, 0, 0])))
    assert min(values) >= 50 and max(values) <= 150  # factor drawn from [0.5, 1.5]
    assert len(values) > 5  # and drawn anew for each image


def _v2_eval(size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(round(size / 0.875), antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


@pytest.mark.parametrize("height, width", [(120, 90), (300, 400), (64, 64)])
def test_eval_matches_the_torchvision_v2_pipeline_on_tensors(height, width):
    image = _image(height, width)
    actual = EvalTransform(48, MEAN, STD)(image)
    assert actual.shape == (3, 48, 48)
    torch.testing.assert_close(actual, _v2_eval(48)(image), atol=1e-5, rtol=0)


def test_eval_gives_a_pil_image_the_pixels_its_tensor_gets():
    """predict reads files with PIL, the DataModules as tensors: the same file, same input."""
    image = _image(120, 90)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    transform = EvalTransform(48, MEAN, STD)
    torch.testing.assert_close(transform(pil), transform(image), atol=0, rtol=0)
