"""predict: a checkpoint trained in the session classifies real image files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from mbv3_lightning.data.transforms import SquareResize
from mbv3_lightning.deploy.predict import predict_paths, resolve_inputs, write_predictions_csv
from mbv3_lightning.deploy.predictor import ModelInfo, load_predictor
from mbv3_lightning.runs.manifest import manifest_samples
from mbv3_lightning.training.run import build_components

from .conftest import log_lines, run_module, write_image, write_recipe_files

CLASSES = ["apple", "banana", "cherry"]


def _test_images(ckpt: Path) -> list[tuple[Path, int]]:
    return manifest_samples(ckpt, ["test"])


def test_predict_names_the_checkpoint_classes_with_probabilities(trained_checkpoint):
    predictor = load_predictor(trained_checkpoint)
    samples = _test_images(trained_checkpoint)
    predictions = predict_paths(predictor, [p for p, _ in samples], k=3, batch_size=5)
    assert predictor.info.class_names == CLASSES and predictor.info.input_size == 32
    assert [p.path for p in predictions] == [p for p, _ in samples]  # input order kept
    for prediction in predictions:
        names = [name for name, _ in prediction.classes]
        probabilities = [probability for _, probability in prediction.classes]
        assert sorted(names) == CLASSES
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-9)  # top_k = all classes
        assert probabilities == sorted(probabilities, reverse=True)
    correct = sum(
        p.classes[0][0] == CLASSES[label]
        for p, (_, label) in zip(predictions, samples, strict=True)
    )
    assert correct / len(samples) >= 0.9


def test_unreadable_files_are_reported_and_skipped(trained_checkpoint, tmp_path):
    good = [p for p, _ in _test_images(trained_checkpoint)][:2]
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good[0].read_bytes()[:40])
    paths = [good[0], not_an_image, truncated, good[1]]
    predictions = predict_paths(load_predictor(trained_checkpoint), paths, k=2, batch_size=2)
    assert [bool(p.error) for p in predictions] == [False, True, True, False]
    out = tmp_path / "predictions.csv"
    write_predictions_csv(predictions, out, k=2)
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(p) for p in paths]  # nothing lost
    assert rows[1]["class_1"] == "" and "unreadable image" in rows[1]["error"]
    assert rows[0]["class_1"] in CLASSES and float(rows[0]["probability_1"]) > 0.0


def test_inputs_resolve_from_file_folder_and_glob(tmp_path):
    a = write_image(tmp_path / "photos" / "a.png", (10, 10, 10))
    b = write_image(tmp_path / "photos" / "nested" / "b.jpg", (10, 10, 10))
    (tmp_path / "photos" / "readme.txt").write_text("x")
    assert resolve_inputs(str(a)) == [a]
    assert resolve_inputs(str(tmp_path / "photos")) == [a, b]
    assert resolve_inputs(str(tmp_path / "photos" / "**" / "*.jpg")) == [b]
    with pytest.raises(FileNotFoundError, match="matched no image files"):
        resolve_inputs(str(tmp_path / "nowhere" / "*.jpg"))


def test_a_checkpoint_without_model_hyperparameters_is_refused(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="no `net`/`num_classes`"):
        load_predictor(foreign)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_predictor(tmp_path / "missing.ckpt")


def test_cli_prints_a_table_and_writes_csv_into_its_run_dir(trained_checkpoint, tmp_path):
    images = sorted({p.parent for p, _ in _test_images(trained_checkpoint)})[0].parent
    run_dir = tmp_path / "predict_run"
    result = run_module(
        "mbv3_lightning.cli.predict",
        f"ckpt_path={trained_checkpoint}",
        f"inputs={images}",
        "top_k=2",
        "batch_size=4",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "mobilenet_v3_small (PyTorch eager) on 12 file(s)" in result.stdout
    # the table and where the file is; the log lines are in the run's predict.log
    assert f"Predictions in {run_dir / 'predictions.csv'}" in result.stdout
    assert not log_lines(result.stdout + result.stderr)
    assert "Classifying 12 file(s)" in (run_dir / "predict.log").read_text()
    with open(run_dir / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and all(r["class_1"] in CLASSES for r in rows)
    assert not list(images.rglob("predictions.csv"))  # nothing written next to the inputs


@pytest.mark.slow
def test_the_recipes_best_pth_and_class_file_predict_like_the_checkpoint(
    trained_checkpoint, tmp_path
):
    pth, classes = write_recipe_files(trained_checkpoint, tmp_path / "runs")
    paths = [p for p, _ in _test_images(trained_checkpoint)]
    from_ckpt = predict_paths(load_predictor(trained_checkpoint), paths, k=3, batch_size=4)
    plain = load_predictor(pth, classes=classes, arch="mobilenet_v3_small", input_size=32)
    assert plain.info.class_names == CLASSES
    from_pth = predict_paths(plain, paths, k=3, batch_size=4)
    for a, b in zip(from_ckpt, from_pth, strict=True):
        assert [n for n, _ in a.classes] == [n for n, _ in b.classes]
        assert [p for _, p in a.classes] == pytest.approx([p for _, p in b.classes], abs=1e-6)
    # The run's own class_indices.json holds the recipe's map too and loads the same way.
    run_classes = trained_checkpoint.parent.parent / "class_indices.json"
    assert json.loads(run_classes.read_text())["0"] == "apple"
    assert load_predictor(pth, classes=run_classes, arch="mobilenet_v3_small").info.class_names == (
        CLASSES
    )
    with pytest.raises(ValueError, match=r"plain state dict .* `classes=` .* `arch=`"):
        load_predictor(pth)
    with pytest.raises(ValueError, match="does not fit mobilenet_v3_large with 3 classes"):
        load_predictor(pth, classes=classes, arch="mobilenet_v3_large")

    run_dir = tmp_path / "predict_run"
    result = run_module(
        "mbv3_lightning.cli.predict",
        f"ckpt_path={pth}",
        f"classes={classes}",
        "arch=mobilenet_v3_small",
        "input_size=32",
        f"inputs={paths[0]}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    with open(run_dir / "predictions.csv") as f:
        assert next(csv.DictReader(f))["class_1"] == from_ckpt[0].classes[0][0]


def test_a_paper_preprocessed_model_is_served_with_the_papers_square_resize(
    trained_checkpoint, compose_cfg, tiny_dataset, tmp_path
):
    """`dataset.preprocess=paper` evaluates on a square resize of the whole photo; predict,
    exports and the web page must not centre-crop what that model never saw cropped."""
    cfg = compose_cfg(["dataset=image_folder", f"dataset.root={tiny_dataset}"])
    cfg.dataset.preprocess = "paper"
    _, model, _, _ = build_components(cfg)
    assert model.hparams.preprocess == "paper"  # what the checkpoint will carry

    checkpoint = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["preprocess"] == "augment"
    checkpoint["hyper_parameters"]["preprocess"] = "paper"
    paper_ckpt = tmp_path / "paper.ckpt"
    torch.save(checkpoint, paper_ckpt)

    wide = Image.new("RGB", (64, 32), "red")
    wide.paste(Image.new("RGB", (16, 32), "blue"), (0, 0))  # a blue band the crop cuts off
    cropped = load_predictor(trained_checkpoint)
    squared = load_predictor(paper_ckpt)
    assert (cropped.info.preprocess, squared.info.preprocess) == ("augment", "paper")
    info = squared.info
    expected = SquareResize(info.input_size, info.mean, info.std)(wide)
    assert torch.equal(squared.preprocess([wide])[0], expected)
    assert not torch.equal(cropped.preprocess([wide])[0], expected)
    # the blue band survives the square resize only
    blue_left = squared.preprocess([wide])[0][2, :, 0] > cropped.preprocess([wide])[0][2, :, 0]
    assert blue_left.all()


def test_exports_keep_the_preprocessing_and_older_exports_default_to_the_crop(tmp_path):
    info = ModelInfo("mobilenet_v3_small", ["a", "b"], 32, (0.5,) * 3, (0.25,) * 3, "paper")
    metadata = info.to_metadata()
    assert ModelInfo.from_metadata(metadata, tmp_path / "m.onnx") == info
    older = {key: value for key, value in metadata.items() if key != "preprocess"}
    assert ModelInfo.from_metadata(older, tmp_path / "m.onnx").preprocess == "augment"
    with pytest.raises(ValueError, match=r"'.*m\.onnx' lacks the metadata class_names"):
        ModelInfo.from_metadata(
            {k: v for k, v in older.items() if k != "class_names"}, tmp_path / "m.onnx"
        )
