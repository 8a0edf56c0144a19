"""The Python API: train, load and predict from a script, as a user of the package would."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from PIL import Image

import mbv3_lightning

from .conftest import FAST_OVERRIDES, REPO_ROOT, log_lines


def test_import_stays_light():
    code = "import sys, mbv3_lightning; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def _assert_same(result, expected) -> None:
    assert result.label == expected.label
    assert [name for name, _ in result.top_k] == [name for name, _ in expected.top_k]
    assert [p for _, p in result.top_k] == pytest.approx([p for _, p in expected.top_k], abs=1e-6)
    assert result.confidence == pytest.approx(expected.confidence, abs=1e-6)


def test_train_then_load_and_predict_images_and_paths(tiny_dataset, tmp_path, capfd):
    out = tmp_path / "run"
    lightning_handlers = list(logging.getLogger("lightning.pytorch").handlers)
    record = mbv3_lightning.train(
        overrides=[
            "dataset=image_folder",
            f"dataset.root={tiny_dataset}",
            *FAST_OVERRIDES,
            "model.input_size=32",
            "trainer.max_epochs=3",
            "+timing.repeats=2",
        ],
        output_dir=out,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert record.to_json()["metrics"]["test/acc"] == metrics["metrics"]["test/acc"]
    # As quiet as `mbv3 train`: Lightning's set-up lines and the package's INFO lines are in
    # the run's train.log, not on the console; the caller's logging is left as it was.
    console = "".join(capfd.readouterr())
    assert "GPU available" not in console and "Seed set to" not in console
    assert not log_lines(console)
    log = (out / "train.log").read_text()
    assert "GPU available" in log and "Seed set to 42" in log and "Dataset 'image_folder'" in log
    assert logging.getLogger("lightning.pytorch").handlers == lightning_handlers

    best = out / "checkpoints" / metrics["best_ckpt"].split("/")[-1]
    model = mbv3_lightning.load(best)
    assert model.class_names == ["apple", "banana", "cherry"]
    paths = sorted((tiny_dataset / "test").rglob("*.jpg"))
    results = model.predict(paths, k=3)
    assert len(results) == len(paths) == 12
    assert all(sum(p for _, p in r.top_k) == pytest.approx(1.0, abs=1e-4) for r in results)
    # the API sees the test split as the training run's test did
    accuracy = sum(r.label == p.parent.name for r, p in zip(results, paths, strict=True)) / len(
        paths
    )
    assert accuracy == pytest.approx(metrics["metrics"]["test/acc"])
    # a PIL image and its path give the same answer; predict() is load() + predict
    # (batches of 1, 2 and 12 images may differ in the last float bits: compared to 1e-6)
    with Image.open(paths[0]) as image:
        _assert_same(model(image, k=3), results[0])
    for alone, batched in zip(mbv3_lightning.predict(best, paths[:2], k=3), results, strict=False):
        _assert_same(alone, batched)
