"""benchmarks/accuracy.py: the bare loop's recipe, and both sides on the same validation images."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image

from benchmarks import accuracy

from .conftest import make_image_folder


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """train/ and val/ of three classes; 60 px photos, larger than the crops taken from them."""
    root = make_image_folder(
        tmp_path / "photos", splits={"train": 6, "val": 2}, size=60, suffix=".jpg"
    )
    # A non-square photo, so the eval resize acts on the short side.
    Image.new("RGB", (80, 45), (220, 40, 40)).save(root / "val" / "apple" / "wide.jpg")
    return root


def test_bare_transforms_crop_the_full_image_and_resize_the_short_side_for_eval():
    train_tf, eval_tf = accuracy.bare_transforms(32)
    photo = Image.new("RGB", (300, 200), (10, 200, 30))
    assert train_tf(photo).shape == (3, 32, 32)
    assert eval_tf(photo).shape == (3, 32, 32)
    crop = train_tf.transforms[0].transforms[0]
    assert crop.scale == (0.6, 1.0)
    resize = eval_tf.transforms[0].transforms[0]
    assert resize.size == 36  # int(32 / 0.875)


def test_bare_model_uses_batchnorm_momentum_0_1_and_channels_last():
    net = accuracy.bare_model(num_classes=7)
    momenta = {m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
    assert momenta == {0.1}
    assert net.classifier[-1].out_features == 7
    assert net.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_bare_loop_validates_every_epoch_on_every_val_image(photos: Path):
    result = accuracy.bare_loop(
        accuracy.folder_split(photos), epochs=2, size=32, batch_size=8, seed=0
    )
    assert [row["epoch"] for row in result["curve"]] == [0, 1]
    assert all(0.0 <= row["val_acc"] <= 1.0 for row in result["curve"])
    assert len(result["val_images"]) == 3 * 2 + 1
    assert "val/apple/wide.jpg" in result["val_images"]


def test_bare_loop_names_the_differing_classes(photos: Path):
    (photos / "val" / "banana").rename(photos / "val" / "plantain")
    with pytest.raises(ValueError, match="plantain"):
        accuracy.folder_split(photos)


def test_on_the_demo_the_bare_loop_reads_the_split_the_project_drew(photos: Path):
    # split_manifest.json as a run writes it: validation carved out of train/
    manifest = {
        "root": str(photos),
        "classes": ["apple", "banana", "cherry"],
        "splits": {
            "train": [["train/apple/000.jpg", 0], ["train/banana/000.jpg", 1]],
            "val": [["train/cherry/001.jpg", 2]],
        },
    }
    split = accuracy.manifest_split(manifest)
    assert split.val == [("train/cherry/001.jpg", 2)]
    image, label = accuracy.Photos(split.root, split.train, accuracy.bare_transforms(32)[1])[1]
    assert image.shape == (3, 32, 32) and label == 1


def test_the_demo_side_is_the_demo_command_with_only_the_budget_and_seed():
    overrides = accuracy.project_overrides(
        None, epochs=2, size=100, batch_size=32, seed=42, device="cpu"
    )
    assert overrides == ["trainer.max_epochs=2", "seed=42", "logger=csv", "test=false"]
    assert accuracy.demo_settings(42) == (100, 32)  # conf/dataset/fruits360_mini.yaml


def test_project_rows_report_the_recalibration_cost_as_a_share_of_training():
    curve = [{"epoch": 0, "val_acc": 0.5}]
    result = {
        "curve": curve,
        "wall_s": 50.0,
        "val_images": [1],
        "train_s": 40.0,
        "recal_batches": 24,
        "recal_s": 2.0,
    }
    row = accuracy.summarise("project", result)
    assert (row["recal_batches"], row["recal_s"], row["recal_share"]) == (24, 2.0, 0.05)


def test_epochs_takes_a_list_of_budgets_and_refuses_a_repeat(capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit):
        accuracy.main(["--demo", "--epochs", "2", "2"])
    assert "lists a budget twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        accuracy.main(["--demo", "--epochs", "0"])
    assert "positive number of epochs" in capsys.readouterr().err


def test_summary_reports_best_and_final_accuracy_and_the_best_epoch():
    curve = [{"epoch": i, "val_acc": a} for i, a in enumerate([0.5, 0.8, 0.7])]
    row = accuracy.summarise("bare loop", {"curve": curve, "wall_s": 12.34, "val_images": [1, 2]})
    assert row == {
        "side": "bare loop",
        "best_val_acc": 0.8,
        "final_val_acc": 0.7,
        "best_epoch": 1,
        "epochs": 3,
        "val_images": 2,
        "wall_s": 12.3,
    }


def test_project_side_is_the_image_folder_command_with_the_shared_settings(tmp_path: Path):
    overrides = accuracy.project_overrides(
        tmp_path, epochs=30, size=128, batch_size=32, seed=7, device="cpu"
    )
    assert "dataset=image_folder" in overrides
    assert f"dataset.root={tmp_path}" in overrides
    assert {"model.input_size=128", "trainer.max_epochs=30", "dataset.batch_size=32", "seed=7"} <= (
        set(overrides)
    )
    assert not any(o.startswith("dataset.protocol") for o in overrides)  # kaggle: val/ as given


@pytest.mark.slow
def test_compare_trains_both_sides_on_the_same_val_images_and_saves_the_table(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(accuracy, "RESULTS_DIR", tmp_path / "results")
    compare = functools.partial(
        accuracy.compare,
        photos,
        epochs=1,
        size=32,
        batch_size=8,
        workers=0,
        extra_overrides=["callbacks.progress_bar=null"],
        workdir=tmp_path,
    )
    entry, bare_result = compare(sides=accuracy.RECALIBRATION_SIDES["both"])
    bare, off, on = entry["rows"]
    assert bare["val_images"] == off["val_images"] == on["val_images"] == 7
    # judged on the project as a user gets it: with the recalibration
    assert entry["ratio"] == on["vs_bare"] == round(on["best_val_acc"] - bare["best_val_acc"], 4)
    # one validation: the 2 full batches of 8 that the 18 training images make
    assert off["recal_batches"] == 0 and on["recal_batches"] == 2
    assert 0 < on["recal_share"] < 1
    path = accuracy.save({**entry, "seconds": 1.0}, "photos: defaults", "cpu")
    saved = json.loads(path.read_text())["benchmarks"]["photos: defaults"]
    assert saved["rows"] == entry["rows"]
    assert "| bare loop |" in path.with_suffix(".md").read_text()
    # a saved bare-loop result stands in for retraining it, only for the same settings
    again, reused = compare(bare=json.loads(json.dumps(bare_result)))  # one side: the project
    assert again["rows"][0] == entry["rows"][0] and reused == bare_result
    with pytest.raises(ValueError, match="rerun without --bare-result"):
        compare(epochs=2, bare=bare_result)
