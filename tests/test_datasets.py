"""Every Kaggle dataset config on a tiny copy in its real Kaggle layout.

Each case builds the folders the way the Kaggle archive (or a common re-packed copy) has
them, composes the real `conf/dataset/<name>.yaml`, and checks what a user relies on:
classes and their display names, split sizes, a repeatable manifest, one real Trainer run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from mbv3_lightning.data.monkeys10 import read_monkey_labels
from mbv3_lightning.data.splits import SPLITS
from mbv3_lightning.training.run import build_components, run

from .conftest import FAST_OVERRIDES, make_image_folder, write_image

# monkey_labels.txt as Kaggle ships it: a header, fields padded with spaces and tabs, CRLF.
MONKEY_LABELS = (
    "Label,  Latin Name           , Common Name                   , Train Images , "
    "Validation Images\r\n"
    "n0   , alouatta_palliata\t, mantled_howler                , 131          , 26\r\n"
    "n1   , erythrocebus_patas\t, patas_monkey                  , 139          , 28\r\n"
    "n2   , cacajao_calvus\t, bald_uakari                   , 137          , 27\r\n"
)
CAR_COLOURS = {
    "beige": (220, 200, 160),
    "black": (10, 10, 10),
    "blue": (30, 60, 220),
    "gold": (210, 170, 40),
    "green": (40, 180, 60),
    "grey": (128, 128, 128),
    "pink": (240, 150, 190),
    "purple": (130, 40, 160),
    "red": (220, 30, 30),
    "silver": (190, 190, 200),
    "white": (250, 250, 250),
}


def _fruits360(root: Path) -> Path:
    """The newer release: a 100x100 copy next to an original-size copy."""
    classes = ("Apple 10", "Apple Golden 1", "Banana")
    base = root / "fruits-360_100x100" / "fruits-360"
    make_image_folder(base, classes, {"Training": 10, "Test": 4})
    make_image_folder(
        root / "fruits-360_original-size" / "fruits-360-original-size", classes, {"Training": 2}
    )
    return root


def _monkeys10(root: Path) -> Path:
    """The doubled folders of the Kaggle archive and its labels file."""
    make_image_folder(root / "training", ("n0", "n1", "n2"), {"training": 5})
    make_image_folder(root / "validation", ("n0", "n1", "n2"), {"validation": 2})
    (root / "monkey_labels.txt").write_bytes(MONKEY_LABELS.encode())
    return root


def _birds(root: Path) -> Path:
    """Split folders named as another copy names them; unbalanced classes (8, 4, 3)."""
    colours = {"Eagle": (200, 40, 40), "Kiwi": (40, 200, 40), "Owl": (40, 40, 200)}
    for name, n_train in {"Eagle": 8, "Kiwi": 4, "Owl": 3}.items():
        for split, count in (("Train_data", n_train), ("Valid", 1), ("TEST", 1)):
            for i in range(count):
                write_image(root / split / name / f"{i}.jpg", colours[name], seed=i)
    return root


def _birds525(root: Path) -> Path:
    """train/valid/test with upper-case species names and the archive's birds.csv."""
    make_image_folder(
        root,
        ("ABBOTTS BABBLER", "BALD EAGLE", "CAPE MAY WARBLER"),
        {"train": 4, "valid": 2, "test": 2},
    )
    (root / "birds.csv").write_text("class id,filepaths,labels,data set,scientific name\n")
    return root


def _car_colours(root: Path) -> Path:
    """A VCoR-like copy with one colour more than the car-colour MobileNetV3 recipe's ten."""
    for colour, rgb in CAR_COLOURS.items():
        for split, count in (("train", 3), ("val", 1)):
            for i in range(count):
                write_image(root / split / colour / f"{i}.jpg", rgb, seed=i)
    return root


def _flat(root: Path) -> Path:
    """tf_flowers style: class folders directly under the root, inside one wrapping folder."""
    make_image_folder(root / "flower_photos", ("daisy", "roses", "tulips"), {"": 10})
    return root


@dataclass
class Case:
    config: str
    build: Callable[[Path], Path]
    names: list[str]
    sizes: dict[str, int]
    extra: tuple[str, ...] = ()


CASES = [
    Case(
        "fruits360",
        _fruits360,
        ["Apple 10", "Apple Golden 1", "Banana"],
        {"train": 21, "val": 9, "test": 12},
    ),
    Case(
        "monkeys10",
        _monkeys10,
        ["mantled_howler", "patas_monkey", "bald_uakari"],
        # the paper's protocol: 30% of training/ (2 of 5 per class) = val, validation/ = test
        {"train": 9, "val": 6, "test": 6},
    ),
    Case("birds", _birds, ["Eagle", "Kiwi", "Owl"], {"train": 15, "val": 3, "test": 3}),
    Case(
        "birds525",
        _birds525,
        ["BALD EAGLE", "CAPE MAY WARBLER"],
        {"train": 8, "val": 4, "test": 4},
        ("dataset.classes=[BALD EAGLE,CAPE MAY WARBLER]",),
    ),
    Case(
        "car_colours",
        _car_colours,
        ["black", "blue", "gold", "green", "grey", "pink", "purple", "red", "silver", "white"],
        {"train": 30, "val": 10, "test": 0},
    ),
    # 10 per class: 15% -> 2 test, then 30% of the other 8 -> 2 val, 6 train
    Case("image_folder", _flat, ["daisy", "roses", "tulips"], {"train": 18, "val": 6, "test": 6}),
]


def _overrides(case: Case, root: Path, *extra: str) -> list[str]:
    return [
        f"dataset={case.config}",
        f"dataset.root={root}",
        *FAST_OVERRIDES,
        "model.input_size=32",
        *case.extra,
        *extra,
    ]


# The generic image folder in the default suite; each Kaggle layout in the slow one.
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.config, marks=() if c.config == "image_folder" else pytest.mark.slow)
        for c in CASES
    ],
)
def test_dataset_in_its_kaggle_layout(case, compose_cfg, tmp_path):
    root = case.build(tmp_path / case.config)
    cfg = compose_cfg(_overrides(case, root, "debug=fast"))
    first = instantiate(cfg.dataset, input_size=32)
    second = instantiate(cfg.dataset, input_size=32)
    assert first.num_classes == len(case.names)
    assert first.class_names == case.names
    assert {split: len(first.samples(split)) for split in case.sizes} == case.sizes
    assert first.manifest() == second.manifest()  # the seeded split repeats exactly
    files_before = sorted(root.rglob("*"))

    record = run(cfg)

    assert record.data.num_classes == len(case.names)
    assert record.data.class_names == case.names
    assert record.data.skipped_images == 0
    assert record.metrics["train/loss"] > 0
    assert sorted(root.rglob("*")) == files_before  # nothing written inside the dataset
    indices = json.loads((tmp_path / "run" / "class_indices.json").read_text())
    assert indices["names"] == case.names


def test_fruits360_prefers_the_100x100_copy(compose_cfg, tmp_path):
    root = _fruits360(tmp_path / "fruits")
    dm = instantiate(compose_cfg(_overrides(CASES[0], root)).dataset, input_size=32)
    assert dm.manifest()["layout"] == {
        "train": "fruits-360_100x100/fruits-360/Training",
        "test": "fruits-360_100x100/fruits-360/Test",
    }


def test_monkey_copy_without_doubled_folders(compose_cfg, tmp_path):
    root = tmp_path / "monkeys"
    make_image_folder(root, ("n0", "n1"), {"training": 3, "validation": 1})
    (root / "monkey_labels.txt").write_bytes(MONKEY_LABELS.encode())
    dm = instantiate(compose_cfg(_overrides(CASES[1], root)).dataset, input_size=32)
    assert dm.class_keys == ["n0", "n1"]
    assert dm.class_names == ["mantled_howler", "patas_monkey"]
    assert len(dm.samples("val")) == 2


def test_a_missing_monkey_labels_file_is_one_warning_per_run(compose_cfg, tmp_path, caplog):
    root = tmp_path / "monkeys"
    make_image_folder(root, ("n0", "n1"), {"training": 3, "validation": 1})
    cfg = compose_cfg(_overrides(CASES[1], root))
    first = instantiate(cfg.dataset, input_size=32)
    second = instantiate(cfg.dataset, input_size=32)  # config checks and the run build one each
    assert first.class_names == second.class_names == ["n0", "n1"]
    assert caplog.text.count("No monkey_labels.txt under") == 1


def test_monkey_labels_file_quirks_are_parsed(tmp_path):
    path = tmp_path / "monkey_labels.txt"
    path.write_bytes(MONKEY_LABELS.encode())
    assert read_monkey_labels(path) == {
        "n0": "mantled_howler",
        "n1": "patas_monkey",
        "n2": "bald_uakari",
    }


def test_class_only_in_test_split_is_an_error_in_detected_layouts(compose_cfg, tmp_path):
    root = _birds(tmp_path / "birds")
    make_image_folder(root, ["Zebra Finch"], {"TEST": 1})
    dm = instantiate(compose_cfg(_overrides(CASES[2], root)).dataset, input_size=32)
    with pytest.raises(ValueError, match=r"TEST' that are not in .*Train_data'.*\['Zebra Finch'\]"):
        _ = dm.num_classes


def test_val_split_missing_a_class_is_an_error_test_split_a_warning(compose_cfg, tmp_path, caplog):
    root = make_image_folder(
        tmp_path / "cars", ("red", "blue", "white"), {"train": 3, "val": 1, "test": 1}
    )
    (root / "test" / "white" / "000.jpg").unlink()
    overrides = ["dataset.classes=null"]
    dm = instantiate(compose_cfg(_overrides(CASES[4], root, *overrides)).dataset, input_size=32)
    assert dm.num_classes == 3
    assert "without images in" in caplog.text and "['white']" in caplog.text
    for path in (root / "val" / "blue").iterdir():
        path.unlink()
    dm = instantiate(compose_cfg(_overrides(CASES[4], root, *overrides)).dataset, input_size=32)
    with pytest.raises(ValueError, match=r"without images in .*val'.*\['blue'\]"):
        _ = dm.num_classes


def test_subset_naming_an_unknown_class_lists_the_available_ones(compose_cfg, tmp_path):
    root = _birds525(tmp_path / "birds525")
    cfg = compose_cfg(_overrides(CASES[3], root, "dataset.classes=[DODO]"))
    with pytest.raises(ValueError, match=r"\['DODO'\].*Available: \['ABBOTTS BABBLER'"):
        _ = instantiate(cfg.dataset, input_size=32).num_classes


def test_missing_dataset_names_handle_layout_and_override(compose_cfg, tmp_path):
    cfg = compose_cfg(_overrides(CASES[0], tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as error:
        _ = instantiate(cfg.dataset, input_size=32).num_classes
    message = str(error.value)
    for expected in (
        "moltean/fruits",
        "Training/<class>",
        "dataset.root=",
        "dataset.download=true",
    ):
        assert expected in message


def test_offline_download_fails_with_the_fix(compose_cfg, tmp_path, monkeypatch):
    # A closed local proxy makes the real kagglehub request fail at once, as offline.
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "kagglehub"))
    cfg = compose_cfg(_overrides(CASES[1], tmp_path / "monkeys", "dataset.download=true"))
    with pytest.raises(RuntimeError) as error:
        _ = instantiate(cfg.dataset, input_size=32).num_classes
    message = str(error.value)
    for expected in ("slothkong/10-monkey-species", "dataset.root=", "training/training/n0"):
        assert expected in message
    assert not (tmp_path / "monkeys").exists()


def test_balance_weights_reach_the_training_loss(compose_cfg, tmp_path):
    root = _birds(tmp_path / "birds")
    cfg = compose_cfg(
        _overrides(CASES[2], root, "dataset.balance=weights", "model.label_smoothing=0.0")
    )
    _, model, _, _ = build_components(cfg)
    # 8, 4, 3 training images (no val carved out: Valid/ exists): weight = 15 / (3 * n)
    expected = torch.tensor([15 / 24, 15 / 12, 15 / 9])
    assert torch.allclose(model.class_weights, expected)
    logits, targets = torch.zeros(3, 3), torch.tensor([0, 1, 2])
    logits[0, 0] = 5.0  # only the frequent class is right: the weighted loss counts it less
    train_loss, _ = model.compute_loss(logits, targets, "train")
    val_loss, _ = model.compute_loss(logits, targets, "val")
    assert train_loss > val_loss


def test_balance_sampler_draws_classes_equally(compose_cfg, tmp_path):
    root = _birds(tmp_path / "birds")
    dm = instantiate(
        compose_cfg(_overrides(CASES[2], root, "dataset.balance=sampler")).dataset, input_size=32
    )
    dm.setup()
    labels = [label for _, label in dm.samples("train")]
    sampler = dm.train_dataloader().sampler
    drawn = Counter(labels[i] for _ in range(40) for i in sampler)
    assert Counter(labels) == {0: 8, 1: 4, 2: 3}
    shares = [drawn[c] / sum(drawn.values()) for c in range(3)]
    assert all(0.28 < share < 0.39 for share in shares), shares


def test_ram_cache_serves_images_without_the_files(compose_cfg, tmp_path):
    root = make_image_folder(tmp_path / "flat", splits={"": 6}, size=80)
    overrides = _overrides(CASES[5], root, "dataset.cache=true", "dataset.scale=[0.25,1.0]")
    dm = instantiate(compose_cfg(overrides).dataset, input_size=32)
    dm.setup()
    for path in root.rglob("*.jpg"):
        path.unlink()  # from here on only the RAM copy exists
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (8, 3, 32, 32) and len(labels) == 8
    cached = dm.datasets["train"].images
    shapes = {split: {tuple(cached[p].shape) for p, _ in dm.samples(split)} for split in dm.splits}
    # training images large enough for the smallest crop (a quarter of the area) to span the
    # 32-px input: 32 / sqrt(0.25); evaluation images at the eval resize, 32 / 0.875
    assert shapes == {"train": {(3, 64, 64)}, "val": {(3, 37, 37)}, "test": {(3, 37, 37)}}


def test_the_cache_keeps_what_the_training_crops_need_and_never_enlarges(compose_cfg, tmp_path):
    root = make_image_folder(tmp_path / "flat", splits={"": 6}, size=80)
    sides = {}
    for scale in ("[0.08,1.0]", "[0.25,1.0]", "[0.6,1.0]", "[1.0,1.0]"):
        overrides = _overrides(CASES[5], root, f"dataset.scale={scale}")
        dm = instantiate(compose_cfg(overrides).dataset, input_size=64)
        sides[scale] = (dm.cache_short_side("train"), dm.cache_short_side("val"))
    eval_side = round(64 / 0.875)
    assert sides == {
        "[0.08,1.0]": (227, eval_side),  # ceil(64 / sqrt(0.08))
        "[0.25,1.0]": (128, eval_side),
        "[0.6,1.0]": (83, eval_side),
        "[1.0,1.0]": (eval_side, eval_side),  # never below what evaluation keeps
    }
    paper = instantiate(
        compose_cfg(_overrides(CASES[5], root, "dataset.preprocess=paper")).dataset, input_size=64
    )
    assert paper.cache_short_side("train") == paper.cache_short_side("test") == 64


# Table V of the MobileNetV3 image-classification paper: training/ and validation/ images per
# class (n0..n9). Its training counts sum to 1,098 while the text says 1,097 training images;
# n9 gets one image fewer here so the copy has the 1,097 + 272 of the text.
MONKEY_COUNTS = {
    "n0": (105, 26),
    "n1": (111, 28),
    "n2": (110, 27),
    "n3": (122, 30),
    "n4": (105, 26),
    "n5": (113, 28),
    "n6": (106, 26),
    "n7": (114, 28),
    "n8": (106, 27),
    "n9": (105, 26),
}


@pytest.mark.slow
def test_monkeys10_follows_the_papers_protocol_on_a_full_size_copy(compose_cfg, tmp_path):
    """1,097 training/ + 272 validation/ images: 0.7 of training/ trains, the rest validates,
    validation/ is the test set, and the test split gets its ROC files."""
    root = tmp_path / "monkeys10"
    for c, (name, (n_train, n_val)) in enumerate(MONKEY_COUNTS.items()):
        colour = (25 * c, 255 - 25 * c, (97 * c) % 256)
        for folder, count in (("training/training", n_train), ("validation/validation", n_val)):
            for i in range(count):
                write_image(root / folder / name / f"{i:03d}.jpg", colour, size=16, seed=i)
    (root / "monkey_labels.txt").write_bytes(MONKEY_LABELS.encode())
    overrides = [
        "dataset=monkeys10",
        f"dataset.root={root}",
        *FAST_OVERRIDES,
        "model.input_size=32",
        "dataset.eval_batch_size=64",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
    ]
    cfg = compose_cfg(overrides)
    dm = instantiate(cfg.dataset, input_size=32)
    val_counts = [round(0.3 * n_train) for n_train, _ in MONKEY_COUNTS.values()]
    assert dm.class_counts("val") == val_counts
    assert sum(dm.class_counts("train")) + sum(val_counts) == 1097
    # a stratified 30% per class: 766 + 331 (the paper's own random split gave 770 + 328)
    assert (sum(dm.class_counts("train")), sum(val_counts)) == (766, 331)
    assert dm.class_counts("test") == [n_val for _, n_val in MONKEY_COUNTS.values()]
    manifest = dm.manifest()
    assert manifest["protocol"] == "paper"
    assert manifest["split_sources"] == {
        "train": "training/training",
        "val": "training/training",
        "test": "validation/validation",
    }
    train_files = {path for path, _ in manifest["splits"]["train"]}
    assert train_files.isdisjoint(path for path, _ in manifest["splits"]["val"])

    record = run(cfg)

    run_dir = tmp_path / "run"
    roc = json.loads((run_dir / "roc.json").read_text())
    assert set(roc["classes"]) == {"mantled_howler", "patas_monkey", "bald_uakari"} | {
        f"n{i}" for i in range(3, 10)
    }
    assert (run_dir / "roc.png").stat().st_size > 10_000
    assert sum(row["support"] for row in record.per_class) == 272
    assert record.cost.test_set_images == 272


def test_monkeys10_validation_folder_as_validation_split(compose_cfg, tmp_path):
    root = _monkeys10(tmp_path / "monkeys10")
    cfg = compose_cfg(_overrides(CASES[1], root, "dataset.protocol=kaggle"))
    dm = instantiate(cfg.dataset, input_size=32)
    assert {split: len(dm.samples(split)) for split in SPLITS} == {
        "train": 15,
        "val": 6,
        "test": 0,
    }
    assert dm.manifest()["protocol"] == "kaggle"
    assert dm.manifest()["split_sources"]["val"] == "validation/validation"
