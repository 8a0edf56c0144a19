"""The GPU-fed training pipeline: the CPU path's augmentation draws, resampled on the device.

Everything runs on the CPU here (the device half is plain torch, so it runs wherever the batch
is); the GPU checks at the end skip with a reason without CUDA.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from torchvision.transforms.v2 import functional as TF

from mbv3_lightning.data.device_augment import CanvasTransform, DeviceAugment, canvas_side
from mbv3_lightning.data.image_folder import ImageFolderDataModule
from mbv3_lightning.data.images import decode_rgb
from mbv3_lightning.data.transforms import TrainTransform
from mbv3_lightning.data.workers import default_num_workers
from mbv3_lightning.resources import resource_path
from mbv3_lightning.training.run import build_components

from .conftest import FAST_OVERRIDES, make_image_folder, run_module

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _photos(count: int = 4) -> list[torch.Tensor]:
    """Real 100x100 Fruits-360 photos from the bundled demo data, several classes."""
    folder = resource_path("data/fruits360-mini") / "train"
    paths = [sorted(d.glob("*.jpg"))[0] for d in sorted(folder.iterdir())[:count]]
    return [decode_rgb(path) for path in paths]


def _wide_photo() -> torch.Tensor:
    """A 300x600 picture from two real photos: larger than the canvas, and elongated."""
    left, right = _photos(2)
    return TF.resize(torch.cat([left, right], dim=-1), [300, 600], antialias=True)


def _grey_levels(normalised: torch.Tensor) -> torch.Tensor:
    """Normalised images back on the 0-255 scale."""
    return normalised * torch.tensor(STD).view(-1, 3, 1, 1) * 255


def test_canvas_transform_draws_what_the_cpu_path_draws():
    train = TrainTransform(64, MEAN, STD, scale=(0.25, 1.0), brightness=0.3)
    image = _photos(1)[0]
    canvas = CanvasTransform(train, short_side=100, side=100)
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        draw = train.sample(image)
        torch.manual_seed(seed)
        _, box = canvas(image)
        expected = [
            draw.left,
            draw.top,
            draw.left + draw.width,
            draw.top + draw.height,
            float(draw.flip),
            draw.brightness,
        ]
        assert box.tolist() == pytest.approx(expected)
        flips.add(draw.flip)
    assert flips == {True, False}


def test_the_canvas_holds_the_image_and_one_replicated_row_and_column():
    image = torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8, generator=torch.Generator())
    canvas, _ = CanvasTransform(TrainTransform(32, MEAN, STD), short_side=64, side=48)(image)
    assert canvas.shape == (48, 48, 3) and canvas.dtype == torch.uint8
    pixels = image.permute(1, 2, 0)
    assert torch.equal(canvas[:40, :30], pixels)
    assert torch.equal(canvas[:40, 30], pixels[:, -1])  # the column past the right edge
    assert torch.equal(canvas[40, :30], pixels[-1])  # the row past the bottom edge
    assert canvas[41:].eq(0).all() and canvas[:, 31:].eq(0).all()


def test_a_large_image_is_shrunk_onto_the_canvas_and_its_box_with_it():
    train = TrainTransform(64, MEAN, STD, scale=(0.25, 1.0))
    image = _wide_photo()  # 300x600: short side 300 > 150, long side 600 > 200
    torch.manual_seed(3)
    draw = train.sample(image)
    torch.manual_seed(3)
    canvas, box = CanvasTransform(train, short_side=150, side=200)(image)
    # shrunk to fit the 200-px canvas: 100x200, a third of the original
    assert canvas[:, :200].shape == (200, 200, 3) and canvas[101:].eq(0).all()
    assert box[:4].tolist() == pytest.approx(
        [c / 3 for c in (draw.left, draw.top, draw.left + draw.width, draw.top + draw.height)]
    )


@pytest.mark.parametrize("source", ["photos", "wide"])
def test_device_pixels_match_the_cpu_pipeline_for_the_same_seed(source):
    """Same draws, different resampling kernel: under one grey level apart on average."""
    train = TrainTransform(64, MEAN, STD, scale=(0.25, 1.0), brightness=0.2)
    images = _photos() if source == "photos" else [_wide_photo()]
    canvas = CanvasTransform(train, short_side=150 if source == "wide" else 100, side=200)
    device = DeviceAugment(64, MEAN, STD)
    cpu, boxes, canvases = [], [], []
    for seed in range(16):
        image = images[seed % len(images)]
        torch.manual_seed(seed)
        cpu.append(train(image))
        torch.manual_seed(seed)
        pixels, box = canvas(image)
        canvases.append(pixels)
        boxes.append(box)
    on_device = device(torch.stack(canvases), torch.stack(boxes))
    assert on_device.shape == (16, 3, 64, 64) and on_device.dtype == torch.float32
    difference = _grey_levels(on_device - torch.stack(cpu)).abs()
    assert difference.mean() < 1.0
    assert difference.flatten().quantile(0.99) < 8.0
    # a mirrored sample really is mirrored: against the unmirrored crop it differs a lot
    flipped = [i for i, box in enumerate(boxes) if box[4] == 1]
    assert flipped
    i = flipped[0]
    assert (
        _grey_levels(on_device[i : i + 1].flip(-1) - cpu[i]).abs().mean() > 5 * difference[i].mean()
    )


def test_device_augment_rejects_float_batches_with_the_expected_shapes():
    with pytest.raises(ValueError, match=r"uint8 \(N, side, side, 3\)"):
        DeviceAugment(32, MEAN, STD)(torch.zeros(2, 3, 32, 32), torch.zeros(2, 6))


def test_canvas_side_fits_the_longest_shrunk_image_up_to_4_by_3():
    assert canvas_side(100, [(100, 100), (100, 100)]) == 100  # never enlarged
    assert canvas_side(200, [(400, 300), (100, 100)]) == 267  # 4:3 at short side 200
    assert canvas_side(200, [(1000, 200)]) == 267  # longer than 4:3: capped
    assert canvas_side(200, []) == 267


def test_workers_scale_with_the_cores_of_each_training_process(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert default_num_workers() == 15
    assert default_num_workers(processes=2) == 7
    monkeypatch.setattr("os.cpu_count", lambda: 128)
    assert default_num_workers() == 32  # MAX_WORKERS
    assert default_num_workers(processes=8) == 15
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_num_workers() == 0


class _BatchProbe(L.Callback):
    """Keeps the first training batch as the network receives it."""

    def __init__(self) -> None:
        self.images: torch.Tensor | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.images is None:
            self.images = batch[0].detach().clone()


def _fit(compose_cfg, root: Path, tmp_path: Path, *extra: str):
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={root}",
            "model.input_size=32",
            "trainer.max_epochs=1",
            *FAST_OVERRIDES,
            *extra,
        ],
        tmp_path / "run",
    )
    datamodule, model, callbacks, loggers = build_components(cfg)
    probe = _BatchProbe()
    trainer = instantiate(cfg.trainer, callbacks=[*callbacks, probe], logger=loggers)
    trainer.fit(model, datamodule=datamodule)
    return datamodule, model, probe.images


@pytest.mark.slow
def test_fit_with_augment_on_device_trains_on_augmented_normalised_images(
    compose_cfg, tmp_path, caplog
):
    root = make_image_folder(tmp_path / "data", splits={"train": 12, "val": 4})
    with caplog.at_level(logging.INFO, logger="mbv3_lightning.data.image_folder"):
        datamodule, model, images = _fit(compose_cfg, root, tmp_path, "dataset.augment_on=device")
    assert "Training augmentation on the device" in caplog.text
    # the loader sends uint8 canvases with their boxes; the network got float crops
    (canvases, boxes), _ = next(iter(datamodule.train_dataloader()))
    assert canvases.dtype == torch.uint8 and canvases.shape == (8, 32, 32, 3)
    assert boxes.shape == (8, 6)
    assert images is not None and images.dtype == torch.float32
    assert images.shape == (8, 3, 32, 32)
    # normalised: the fixture's colours span the ImageNet-normalised range, not 0-255
    assert -2.2 < images.min() < 0 < images.max() < 2.7
    assert model.trainer.state.finished
    # evaluation batches are prepared in the workers as before
    eval_images, _ = next(iter(datamodule.val_dataloader()))
    assert eval_images.dtype == torch.float32


@pytest.mark.slow
def test_auto_keeps_augmentation_in_the_workers_on_a_cpu_trainer(compose_cfg, tmp_path):
    root = make_image_folder(tmp_path / "data", splits={"train": 12, "val": 4})
    datamodule, model, _ = _fit(compose_cfg, root, tmp_path)
    assert datamodule.device_augment is None
    first, _ = next(iter(datamodule.train_dataloader()))
    assert isinstance(first, torch.Tensor) and first.dtype == torch.float32
    # channels_last=auto: NHWC on the CPU, where it trained faster
    assert model.memory_format == torch.channels_last


def test_device_augmentation_with_the_papers_preprocessing_warns_and_stays_in_the_workers(
    tmp_path, caplog
):
    root = make_image_folder(tmp_path / "data", splits={"train": 4, "val": 2})
    datamodule = ImageFolderDataModule(
        root, input_size=32, num_workers=0, preprocess="paper", augment_on="device"
    )
    with caplog.at_level(logging.WARNING):
        datamodule.setup("fit")
    assert "dataset.augment_on=device has no effect with dataset.preprocess=paper" in caplog.text
    assert datamodule.device_augment is None
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32)


@needs_cuda
def test_device_augment_on_cuda_matches_the_cpu():
    canvases = torch.randint(0, 256, (4, 80, 80, 3), dtype=torch.uint8)
    boxes = torch.tensor([[0, 0, 80, 80, 0, 1.0], [10, 5, 70, 60, 1, 1.2]] * 2)
    device = DeviceAugment(48, MEAN, STD)
    expected = device(canvases, boxes)
    actual = device(canvases.cuda(), boxes.cuda()).cpu()
    torch.testing.assert_close(actual, expected, atol=1e-3, rtol=0)


@needs_cuda
def test_a_cuda_trainer_augments_on_the_gpu_by_default(compose_cfg, tmp_path):
    root = make_image_folder(tmp_path / "data", splits={"train": 12, "val": 4})
    datamodule, model, images = _fit(
        compose_cfg, root, tmp_path, "trainer=gpu", "trainer.accelerator=gpu"
    )
    assert datamodule.device_augment is not None
    assert images is not None and images.is_cuda and images.dtype == torch.float32
    assert model.memory_format == torch.contiguous_format  # channels_last=auto on CUDA


@pytest.mark.slow
def test_the_demo_augmented_on_the_device_reaches_the_demos_accuracy(tmp_path):
    """The demo command with the GPU-fed pipeline (run on the CPU here): the same accuracy bar
    as the plain demo, so the device half trains as well as the workers' augmentation."""
    run_dir = tmp_path / "demo"
    result = run_module(
        "mbv3_lightning", f"hydra.run.dir={run_dir}", "dataset.augment_on=device", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["metrics"]["test/acc"] >= 0.95
    assert "Training augmentation on the device" in (run_dir / "train.log").read_text()
