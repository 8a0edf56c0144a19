"""A tiny real train + test writes every promised file; `evaluate` re-scores its checkpoint."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from mbv3_lightning.training.evaluate import _check_same_classes
from mbv3_lightning.training.run import run

from .conftest import (
    FAST_OVERRIDES,
    assert_scored_every_test_image,
    log_lines,
    run_module,
    write_image,
)
from .test_wandb import offline_run

# Six classes, so top-5 accuracy is reported too (conftest's folders have at most five).
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 70, 230),
    "yellow": (230, 210, 40),
    "purple": (160, 60, 200),
    "grey": (128, 128, 128),
}
CLASSES = tuple(sorted(COLOURS))  # label order: sorted folder names
LOSSES = ["train/loss", "val/loss", "test/loss"]
TOP_LEVEL_KEYS = {
    "model", "dataset", "seed", "input_size", "num_classes", "class_names", "epochs",
    "metrics", "params_total", "params_trainable", "train_time_s", "wall_time_s", "best_ckpt",
    "run_dir", "device", "torch_threads", "versions", "git_commit", "config", "best_epoch",
    "test_ms_per_image", "test_images_per_s", "params", "macs", "flops", "per_class",
    "test_set_ms_per_image", "test_set_time_s", "test_set_images",
}  # fmt: skip
FIGURES = ("curves.png", "roc.png", "confusion.png")


def _assert_valid_png(path: Path) -> None:
    with Image.open(path) as image:
        image.verify()  # a truncated or corrupt file raises here
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= 400, f"{path.name} is only {image.size}"
        # Not a blank canvas: a figure with axes, text and curves has many colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50


def _assert_run_files(out: Path, metrics: dict) -> None:
    with open(out / "per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == list(CLASSES)
    assert list(rows[0]) == [
        "class", "precision", "recall", "specificity", "f1", "support", "split"
    ]  # fmt: skip
    assert {r["split"] for r in rows} == {"test"}  # the dataset has a test split: it is scored
    assert sum(int(r["support"]) for r in rows) == 6 * 3  # every test image counted once
    roc = json.loads((out / "roc.json").read_text())
    assert list(roc["classes"]) == list(CLASSES) and {"micro", "macro"} <= set(roc)
    for curve in [*roc["classes"].values(), roc["micro"], roc["macro"]]:
        assert curve["fpr"][0] == 0.0 and curve["fpr"][-1] == 1.0 and curve["tpr"][-1] == 1.0
        assert len(curve["fpr"]) == len(curve["tpr"]) and 0.0 <= curve["auc"] <= 1.0
    assert roc["macro"]["auc"] == pytest.approx(metrics["metrics"]["test/auroc"])
    for name in FIGURES:
        _assert_valid_png(out / name)
    assert not list(out.glob(".tmp-*"))  # no half-written files left behind


def _assert_same_per_class(actual: list[dict], expected: list[dict]) -> None:
    """Row by row and field by field: names and supports exactly, scores to float32 noise.

    (pytest.approx does not compare nested structures such as a list of dicts.)
    """
    assert [row["class"] for row in actual] == [row["class"] for row in expected]
    for got, want in zip(actual, expected, strict=True):
        assert set(got) == set(want), got["class"]
        for field, value in want.items():
            if isinstance(value, float):
                assert got[field] == pytest.approx(value, abs=1e-6), (got["class"], field)
            else:
                assert got[field] == value, (got["class"], field)


@pytest.mark.slow
def test_run_writes_every_metric_and_figure_then_evaluate_rescores_it(compose_cfg, tmp_path):
    root = tmp_path / "six"
    for c, (name, colour) in enumerate(COLOURS.items()):
        for split, count in (("train", 6), ("test", 3)):
            for i in range(count):
                write_image(root / split / name / f"{i}.png", colour, seed=100 * c + i)
    out = tmp_path / "run"
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={root}",
            *FAST_OVERRIDES,
            "debug=limit",
            "model.input_size=32",
            "+timing.repeats=5",
        ],
        out,
    )
    summary = run(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(summary.to_json()))  # the file is what run() returned
    assert set(metrics) >= TOP_LEVEL_KEYS
    assert_scored_every_test_image(metrics, n_test=len(CLASSES) * 3)
    for name in ("precision", "recall", "specificity", "f1"):  # macro: the classes' plain mean
        mean = sum(row[name] for row in metrics["per_class"]) / len(CLASSES)
        assert metrics["metrics"][f"test/{name}"] == pytest.approx(mean, abs=1e-6), name
    assert metrics["metrics"]["val/acc_best"] >= metrics["metrics"]["val/acc"]
    for key in LOSSES:
        assert metrics["metrics"][key] > 0.0, key
    # Top-5 of 6 classes is never below top-1.
    assert metrics["metrics"]["test/acc_top5"] >= metrics["metrics"]["test/acc"]
    assert metrics["best_epoch"] in (0, 1)
    assert metrics["macs"] > 0 and metrics["flops"] == 2 * metrics["macs"]
    assert metrics["params"] == metrics["params_total"]
    speed = metrics["test_ms_per_image"]
    assert 0.0 < speed["median"] <= speed["p95"] and metrics["test_images_per_s"] > 0.0
    # the paper's test time: one pass over the whole test set, divided by its images
    assert metrics["test_set_images"] == sum(row["support"] for row in metrics["per_class"])
    assert metrics["test_set_ms_per_image"] == pytest.approx(
        1000 * metrics["test_set_time_s"] / metrics["test_set_images"], rel=0.01
    )
    assert set(metrics["versions"]) == {
        "python",
        "torch",
        "torchvision",
        "lightning",
        "torchmetrics",
    }
    assert metrics["config"]["model"]["input_size"] == 32  # resolved config
    assert [row["class"] for row in metrics["per_class"]] == list(CLASSES)
    with open(out / "curves.csv") as f:
        curves = list(csv.DictReader(f))
    assert [r["epoch"] for r in curves] == ["0", "1"]
    assert list(curves[0]) == ["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr"]
    assert all(float(r["lr"]) > 0 for r in curves)
    _assert_run_files(out, metrics)

    # Re-scoring the tested (best) checkpoint on the same test split gives the same numbers.
    eval_dir = tmp_path / "evaluated"
    result = run_module(
        "mbv3_lightning.cli.evaluate",
        f"ckpt_path={metrics['best_ckpt']}",
        "dataset=image_folder",
        f"dataset.root={root}",
        "dataset.num_workers=0",
        "trainer.accelerator=cpu",
        "timing.repeats=5",
        "logger=wandb",  # offline (conftest sets WANDB_MODE)
        f"hydra.run.dir={eval_dir}",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the training run's bar, with its times and speed; the log lines only in evaluate.log
    (testing,) = [line for line in result.stdout.splitlines() if line.startswith("Testing")]
    assert re.search(r" \d+/\d+ \d+:\d\d<\d+:\d\d [\d.]+ img/s", testing), testing
    assert not log_lines(result.stdout + result.stderr)
    assert "GPU available" in (eval_dir / "evaluate.log").read_text()
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    for key in ("test/acc", "test/auroc", "test/f1", "test/acc_top5"):
        assert evaluated["metrics"][key] == pytest.approx(metrics["metrics"][key], abs=1e-6)
    _assert_same_per_class(evaluated["per_class"], metrics["per_class"])
    assert evaluated["best_epoch"] == metrics["best_epoch"]  # the training run's curves
    _assert_run_files(eval_dir, evaluated)
    (wandb_dir,) = (eval_dir / "wandb").glob("offline-run-*")
    logged = offline_run(wandb_dir)
    assert logged["job_type"] == "evaluate" and logged["group"] == "evaluate"
    assert logged["name"] == "mobilenet_v3_small-image_folder-s42-evaluate"
    assert {"test/acc", "test/auroc", "test_ms_per_image/median"} <= logged["summary"]
    # the evaluated data beside the config: every test image the per-class table counts
    scored = sum(row["support"] for row in evaluated["per_class"])
    assert logged["config_values"]["data"]["test_images"] == scored
    # W&B stores a chart's data as <key>_table
    charts = {"test/roc_table", "test/confusion_matrix_table"}
    assert {"test/per_class", *charts, "figures/roc", "figures/confusion"} <= logged["history"]


def test_evaluating_on_other_classes_names_the_difference():
    with pytest.raises(ValueError, match=r"only in the checkpoint: \['cat'\].*\['dog'\]"):
        _check_same_classes(["ant", "cat"], ["ant", "dog"], "/data/pets")
    with pytest.raises(ValueError, match="different order"):
        _check_same_classes(["ant", "cat"], ["cat", "ant"], "/data/pets")
