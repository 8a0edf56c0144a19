"""ImageFolderDataModule: layout checks, deterministic stratified split, image decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mbv3_lightning.data.image_folder import ImageFolderDataModule
from mbv3_lightning.data.images import ImageListDataset, load_rgb
from mbv3_lightning.data.ram_cache import InMemoryImageDataset
from mbv3_lightning.data.splits import stratified_split

from .conftest import make_image_folder


def _datamodule(root: Path, **kwargs) -> ImageFolderDataModule:
    return ImageFolderDataModule(root, num_workers=0, input_size=32, batch_size=4, **kwargs)


def test_split_is_stratified_and_seeded(tiny_dataset):
    first = _datamodule(tiny_dataset, seed=7)
    second = _datamodule(tiny_dataset, seed=7)
    other = _datamodule(tiny_dataset, seed=8)
    first.setup()
    second.setup()
    manifest_a, manifest_b = first.manifest(), second.manifest()
    assert manifest_a["splits"] == manifest_b["splits"]
    assert other.manifest()["splits"]["val"] != manifest_a["splits"]["val"]
    # 10 train images per class, val_fraction 0.3 -> 3 per class in val, 7 in train
    val_labels = [label for _, label in manifest_a["splits"]["val"]]
    assert sorted(val_labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(manifest_a["splits"]["train"]) == 21
    assert len(manifest_a["splits"]["test"]) == 12
    train_files = {path for path, _ in manifest_a["splits"]["train"]}
    assert not train_files & {path for path, _ in manifest_a["splits"]["val"]}
    indices = first.class_indices()
    assert indices["class_to_idx"] == {"apple": 0, "banana": 1, "cherry": 2}


def test_split_of_one_class_ignores_the_others():
    files = {name: [Path(f"{name}/{i}.jpg") for i in range(10)] for name in ("a", "b")}
    _, val_two = stratified_split(files, 0.3, seed=0)
    _, val_one = stratified_split({"a": files["a"]}, 0.3, seed=0)
    assert val_two["a"] == val_one["a"]


def test_existing_val_folder_is_used_as_is(tmp_path):
    root = make_image_folder(tmp_path / "d", splits={"train": 5, "val": 2})
    dm = _datamodule(root)
    assert len(dm.samples("train")) == 15 and len(dm.samples("val")) == 6
    assert not dm.has_split("test")


def test_loaders_give_normalised_batches_of_the_input_size(tiny_dataset):
    dm = _datamodule(tiny_dataset)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert images.mean().abs() < 3  # normalised, not 0..255


def test_class_only_in_test_split_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), splits={"train": 3, "test": 1})
    make_image_folder(root, classes=("a", "b", "zebra"), splits={"test": 1})
    with pytest.raises(ValueError, match=r"not in .*train.*\['zebra'\]"):
        _ = _datamodule(root).num_classes


def test_a_single_class_folder_explains_the_layout(tmp_path):
    make_image_folder(tmp_path / "flat", classes=("a",), splits={"": 2})
    with pytest.raises(ValueError, match=r"1 class folder\(s\) \['a'\]; need at least 2"):
        _ = _datamodule(tmp_path / "flat").num_classes


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("L", ".png"), ("CMYK", ".jpg"), ("P", ".png"), ("RGBA", ".png"), ("LA", ".png")],
)
def test_every_colour_mode_loads_as_rgb(tmp_path, mode, suffix):
    path = tmp_path / f"img{suffix}"
    Image.new("RGB", (12, 8), (200, 30, 30)).convert(mode).save(path)
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (12, 8)


def test_transparent_pixels_become_white(tmp_path):
    path = tmp_path / "alpha.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    assert np.asarray(load_rgb(path)).min() == 255


def test_exif_orientation_is_respected(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored 40x20, shown 20x40
    Image.new("RGB", (40, 20), (10, 10, 10)).save(path, exif=exif)
    assert load_rgb(path).size == (20, 40)


def test_class_named_train_in_a_flat_folder_is_a_class_not_a_split(tmp_path):
    root = make_image_folder(tmp_path / "vehicles", classes=("bus", "train"), splits={"": 4})
    dm = _datamodule(root, test_fraction=0.25)
    assert dm.class_keys == ["bus", "train"]
    assert dm.manifest()["layout"] == {"all": "."}
    assert [len(dm.samples(split)) for split in ("train", "val", "test")] == [4, 2, 2]


def test_two_folders_for_one_split_are_named(tmp_path):
    root = make_image_folder(tmp_path / "d", splits={"train": 2, "val": 1, "validation": 1})
    with pytest.raises(ValueError, match=r"same split: \{'val': \['val', 'validation'\]\}"):
        _ = _datamodule(root).num_classes


def test_ram_cache_auto_counts_each_image_at_its_recorded_size(tmp_path):
    """42 photos of 32x32 px trained at 224 px take 3 x 32 x 32 bytes each in the cache (it
    never enlarges): 0.12 MiB, not the 14 MiB of 4:3 images at the full cache side."""
    root = make_image_folder(tmp_path / "small")  # 3 classes x (10 train + 4 test), 32 px
    fits = ImageFolderDataModule(root, num_workers=0, input_size=224, cache_budget_mb=0.2)
    fits.setup("fit")
    train = fits.datasets["train"]
    assert isinstance(train, InMemoryImageDataset)
    assert all(image.shape == (3, 32, 32) for image in train.images.values())
    assert len(train.images) == 42
    tight = ImageFolderDataModule(root, num_workers=0, input_size=224, cache_budget_mb=0.1)
    tight.setup("fit")
    assert isinstance(tight.datasets["train"], ImageListDataset)
