"""Odd and broken image files: odd ones train, broken ones are named and skipped (or stop)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from mbv3_lightning.data import images
from mbv3_lightning.data.image_folder import ImageFolderDataModule
from mbv3_lightning.data.images import decode_rgb, inspect_image, load_rgb
from mbv3_lightning.runs.result_table import result_table
from mbv3_lightning.training.run import run

from .conftest import FAST_OVERRIDES, make_image_folder, write_image

BROKEN = ("truncated.jpg", "empty.jpg", "text.jpg")
ODD = ("cmyk.jpg", "grey.png", "alpha.png", "one_pixel.png", "large.jpg")


def _add_odd_and_broken_files(folder: Path) -> None:
    """Every bad or odd file kind seen in real datasets, in one class folder of a training split."""
    rgb = Image.fromarray(np.full((48, 48, 3), (220, 40, 40), np.uint8))
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    rgb.convert("L").save(folder / "grey.png")
    rgb.convert("RGBA").save(folder / "alpha.png")
    rgb.resize((1, 1)).save(folder / "one_pixel.png")
    Image.new("RGB", (4000, 3000), (220, 40, 40)).save(folder / "large.jpg")
    whole = write_image(folder / "whole.jpg", (220, 40, 40), size=64).read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image, just a misnamed text file\n")


@pytest.fixture
def messy_dataset(tmp_path: Path) -> Path:
    root = make_image_folder(tmp_path / "messy", classes=("red", "green"), splits={"train": 6})
    _add_odd_and_broken_files(root / "train" / "red")
    return root


def test_training_skips_broken_files_by_name_and_uses_the_odd_ones(
    messy_dataset, compose_cfg, tmp_path, caplog
):
    out = tmp_path / "run"
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={messy_dataset}",
            *FAST_OVERRIDES,
            "model.input_size=32",
            "trainer.max_epochs=1",  # whole epochs: every kept file is decoded
            "dataset.val_fraction=0.2",
        ],
        out,
    )
    record = run(cfg)

    assert record.data.skipped_images == len(BROKEN)
    for name in BROKEN:
        assert f"train/red/{name}" in caplog.text
    manifest = json.loads((out / "split_manifest.json").read_text())
    assert sorted(manifest["skipped_images"]) == sorted(f"train/red/{name}" for name in BROKEN)
    used = {path for split in manifest["splits"].values() for path, _ in split}
    assert {f"train/red/{name}" for name in ODD} <= used
    assert record.metrics["val/acc"] >= 0.0 and record.timings.epochs == 1
    assert json.loads((out / "metrics.json").read_text())["skipped_images"] == len(BROKEN)
    console = Console(record=True, width=100)
    console.print(result_table(record))
    assert re.search(r"skipped images\s+│ 3 \(split_manifest\.json\)", console.export_text())


def test_error_policy_lists_every_broken_file(messy_dataset):
    dm = ImageFolderDataModule(messy_dataset, num_workers=0, bad_images="error")
    with pytest.raises(ValueError, match="3 unreadable image") as error:
        _ = dm.num_classes
    for name in BROKEN:
        assert name in str(error.value)
    assert "dataset.bad_images=skip" in str(error.value)


def test_scan_results_are_cached_outside_the_dataset(messy_dataset, caplog):
    caplog.set_level(logging.INFO, logger="mbv3_lightning")
    files_before = sorted(messy_dataset.rglob("*"))
    ImageFolderDataModule(messy_dataset, num_workers=0).setup()
    caplog.clear()
    second = ImageFolderDataModule(messy_dataset, num_workers=0)
    second.setup()
    assert "read from the cache" in caplog.text
    assert len(second.skipped_images) == len(BROKEN)  # the cache remembers the bad files too
    assert sorted(messy_dataset.rglob("*")) == files_before
    # a changed file changes the key: the new truncation is found
    (messy_dataset / "train" / "green" / "000.jpg").write_bytes(b"\xff\xd8\xff")
    caplog.clear()
    third = ImageFolderDataModule(messy_dataset, num_workers=0)
    assert third.num_classes == 2 and len(third.skipped_images) == len(BROKEN) + 1
    assert "read from the cache" not in caplog.text


def test_truncated_jpeg_that_opens_lazily_is_caught(tmp_path):
    path = write_image(tmp_path / "photo.jpg", (10, 120, 200), size=64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    Image.open(path).close()  # the header parses: the trap a lazy check falls into
    info = inspect_image(path)
    assert not info.ok and "truncated" in info.error


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_fast_jpeg_decoder_matches_pil_pixel_for_pixel(tmp_path, mode):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    path = tmp_path / f"{mode}.jpg"
    Image.fromarray(pixels).convert(mode).save(path, quality=90)
    fast = decode_rgb(path)
    reference = torch.from_numpy(np.asarray(load_rgb(path)).copy()).permute(2, 0, 1)
    assert fast.dtype == torch.uint8 and fast.shape == (3, 24, 40)
    assert torch.equal(fast, reference)


def test_jpegs_decode_through_pil_when_torchvision_has_no_decoder(tmp_path, monkeypatch):
    # torchvision 0.29 deprecated its image decoders; a release without them must not break
    # loading, only make it slower.
    path = write_image(tmp_path / "photo.jpg", (10, 120, 200), size=48)
    monkeypatch.setattr(images, "decode_jpeg", None)
    decoded = decode_rgb(path)
    reference = torch.from_numpy(np.asarray(load_rgb(path)).copy()).permute(2, 0, 1)
    assert torch.equal(decoded, reference)


def test_png_with_alpha_takes_the_pil_path_and_is_flattened_onto_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (5, 5), (0, 0, 0, 0)).save(path)
    assert decode_rgb(path).min() == 255
