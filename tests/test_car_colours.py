"""The car-colour MobileNetV3 recipe end to end: its folder layout (train/ + val/, no test/),
its study config, per-class scores of every epoch, and the evaluation of the best checkpoint
on val."""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import pytest

from mbv3_lightning.training.run import run

from .conftest import FAST_OVERRIDES, write_image

# The recipe's 10 colours (its class_indices.json), each drawn as its own RGB.
CAR_COLOURS = {
    "black": (15, 15, 15),
    "blue": (30, 60, 220),
    "gold": (212, 175, 55),
    "green": (30, 160, 50),
    "grey": (128, 128, 128),
    "pink": (250, 150, 200),
    "purple": (120, 40, 160),
    "red": (220, 30, 30),
    "silver": (200, 200, 210),
    "white": (250, 250, 250),
}


def make_car_colour_folder(root: Path, train: int = 6, val: int = 3) -> Path:
    """``root/{train,val}/<colour>/<i>.jpg``: the recipe's layout, no test folder."""
    for split, count in (("train", train), ("val", val)):
        for colour, rgb in CAR_COLOURS.items():
            for i in range(count):
                seed = zlib.crc32(f"{split}/{colour}/{i}".encode())
                write_image(root / split / colour / f"{i:03d}.jpg", rgb, 32, seed)
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def car_colour_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from .conftest import compose_train_config

    root = make_car_colour_folder(tmp_path_factory.mktemp("car_colours"))
    out = tmp_path_factory.mktemp("car_run") / "run"
    overrides = [
        "experiment=car_colours",
        f"dataset.root={root}",
        "model.net.pretrained=false",  # no ImageNet weights offline
        *FAST_OVERRIDES,
        "model.input_size=32",
        "trainer.max_epochs=3",  # the recipe's 20, shortened for the test
        "dataset.eval_batch_size=8",
    ]
    run(compose_train_config(overrides, out))
    return out


def test_car_colours_trains_the_recipes_classifier_and_evaluates_val(car_colour_run):
    out = car_colour_run
    metrics = json.loads((out / "metrics.json").read_text())
    # the recipe's "train parameters": 601098 of "total parameters": 1528106
    assert (metrics["params_trainable"], metrics["params_total"]) == (601_098, 1_528_106)
    assert metrics["config"]["optimizer"]["_target_"] == "torch.optim.AdamW"
    assert metrics["config"]["optimizer"]["lr"] == 0.01
    assert metrics["config"]["dataset"]["batch_size"] == 8
    # no test/ folder: the best checkpoint was scored on val, and every file says so
    assert metrics["evaluated_split"] == "val"
    assert 0.0 <= metrics["metrics"]["test/acc"] <= 1.0
    for name in ("per_class.csv", "roc.png", "roc.json", "confusion.png", "curves.png"):
        assert (out / name).is_file(), name
    per_class = _rows(out / "per_class.csv")
    assert [r["class"] for r in per_class] == list(CAR_COLOURS)
    assert {r["split"] for r in per_class} == {"val"}
    assert [int(r["support"]) for r in per_class] == [3] * 10  # the val images per colour
    assert json.loads((out / "roc.json").read_text())["split"] == "val"


def test_per_class_scores_of_every_epoch_and_the_best_epochs_confusions(car_colour_run):
    out = car_colour_run
    metrics = json.loads((out / "metrics.json").read_text())
    rows = _rows(out / "per_class_epochs.csv")
    # 3 epochs x (train, val) x 10 colours
    assert len(rows) == 3 * 2 * 10
    assert {(int(r["epoch"]), r["stage"]) for r in rows} == {
        (e, s) for e in range(3) for s in ("train", "val")
    }
    train_support = [int(r["support"]) for r in rows if r["stage"] == "train" and r["epoch"] == "0"]
    # every image of the epoch's 7 full batches of 8 counted once (the loader drops the last 4)
    assert sum(train_support) == 56
    # The best epoch's val rows are the same weights on the same images as the evaluation of
    # the best checkpoint on val: the two tables must agree.
    best = metrics["best_epoch"]
    best_val = {r["class"]: r for r in rows if r["stage"] == "val" and int(r["epoch"]) == best}
    for row in _rows(out / "per_class.csv"):
        for key in ("precision", "recall", "specificity", "f1"):
            assert float(best_val[row["class"]][key]) == pytest.approx(float(row[key]), abs=1e-6)
    # Train macro means are logged per epoch next to val's (metrics.csv).
    logged = _rows(out / "metrics.csv")
    for epoch in range(3):
        f1s = [float(r["f1"]) for r in rows if r["stage"] == "train" and int(r["epoch"]) == epoch]
        train_f1 = next(
            float(r["train/f1"]) for r in logged if r.get("train/f1") and int(r["epoch"]) == epoch
        )
        assert train_f1 == pytest.approx(sum(f1s) / 10, abs=1e-5)
    confusions = json.loads((out / "epoch_confusions.json").read_text())
    assert confusions["best_epoch"] == best and len(confusions["epochs"]) == 6
    assert (out / "confusion_train.png").is_file() and (out / "confusion_val.png").is_file()
