"""export: ONNX and TorchScript files that match eager PyTorch, and an int8 ONNX model."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from omegaconf import DictConfig

from mbv3_lightning.cli.config import compose_config
from mbv3_lightning.deploy.export import ParityError, export
from mbv3_lightning.deploy.predict import predict_paths
from mbv3_lightning.deploy.predictor import OnnxPredictor, TorchScriptPredictor, load_predictor
from mbv3_lightning.runs.manifest import manifest_samples

CLASSES = ["apple", "banana", "cherry"]


def export_config(ckpt: Path, output_dir: Path, *overrides: str) -> DictConfig:
    """The real conf/export.yaml, with few latency runs to keep the suite fast."""
    return compose_config(
        "export",
        [f"ckpt_path={ckpt}", "latency_runs=3", *overrides],
        output_dir=output_dir,
        output_key="output_dir",
    )


@pytest.fixture(scope="module")
def onnx_int8_export(trained_checkpoint, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("export_onnx")
    return export(export_config(trained_checkpoint, out, "format=onnx", "quantize=int8"))


def _rows(report: dict) -> dict[str, dict]:
    return {row["runtime"]: row for row in report["runtimes"]}


def test_onnx_export_passes_parity_and_carries_classes(onnx_int8_export):
    rows = _rows(onnx_int8_export)
    assert rows["ONNX Runtime"]["max_softmax_diff"] <= 1e-4
    assert rows["TorchScript"]["max_softmax_diff"] <= 1e-4
    for row in rows.values():  # eager, TorchScript, ONNX Runtime, int8: all timed in one run
        assert 0 < row["median_ms"] <= row["p95_ms"] and row["size_mb"] > 0
    model = onnx.load(onnx_int8_export["model_path"])
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["class_names"] == '["apple", "banana", "cherry"]'
    assert metadata["input_size"] == "32"
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"  # dynamic batch axis


def test_predict_on_the_onnx_file_matches_the_checkpoint(onnx_int8_export, trained_checkpoint):
    paths = [p for p, _ in manifest_samples(trained_checkpoint, ["test"])]
    onnx_predictor = load_predictor(onnx_int8_export["model_path"])
    assert isinstance(onnx_predictor, OnnxPredictor)
    assert onnx_predictor.info.class_names == CLASSES
    from_onnx = predict_paths(onnx_predictor, paths, k=3, batch_size=5)
    from_ckpt = predict_paths(load_predictor(trained_checkpoint), paths, k=3, batch_size=5)
    assert [p.classes[0][0] for p in from_onnx] == [p.classes[0][0] for p in from_ckpt]


def test_int8_model_is_smaller_and_reports_its_accuracy_change(onnx_int8_export):
    rows = _rows(onnx_int8_export)
    fp32, int8 = rows["ONNX Runtime"], rows["ONNX Runtime int8"]
    assert int8["size_mb"] < 0.5 * fp32["size_mb"]
    assert fp32["top1_agreement"] == 1.0 and int8["top1_agreement"] >= 0.9
    assert onnx_int8_export["test_images"] == 12
    assert fp32["test_accuracy"] >= 0.9
    assert int8["test_accuracy"] >= fp32["test_accuracy"] - 0.1
    int8_path = Path(onnx_int8_export["model_path"]).with_suffix(".int8.onnx")
    assert load_predictor(int8_path).info.class_names == CLASSES  # metadata carried over


@pytest.mark.slow
def test_torchscript_export_with_sidecar(trained_checkpoint, tmp_path):
    report = export(export_config(trained_checkpoint, tmp_path, "format=torchscript"))
    assert _rows(report)["TorchScript"]["max_softmax_diff"] <= 1e-4
    model_path = Path(report["model_path"])
    assert model_path.suffix == ".pt" and Path(f"{model_path}.json").is_file()
    predictor = load_predictor(model_path)
    assert isinstance(predictor, TorchScriptPredictor)
    assert predictor.info.class_names == CLASSES and predictor.info.input_size == 32


@pytest.mark.slow
def test_failed_parity_writes_no_model(trained_checkpoint, tmp_path):
    cfg = export_config(trained_checkpoint, tmp_path, "parity_tolerance=1e-15")
    with pytest.raises(ParityError, match="above parity_tolerance"):
        export(cfg)
    assert not list(tmp_path.glob("*.onnx*"))


def test_bad_options_name_the_fix(trained_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="format must be one of onnx, torchscript"):
        export(export_config(trained_checkpoint, tmp_path, "format=tflite"))
    with pytest.raises(ValueError, match="use it with format=onnx"):
        export(export_config(trained_checkpoint, tmp_path, "format=torchscript", "quantize=int8"))
    lone = tmp_path / "lone" / "model.ckpt"
    lone.parent.mkdir()
    lone.write_bytes(trained_checkpoint.read_bytes())  # no run dir, so no manifest
    with pytest.raises(FileNotFoundError, match="images=<folder or glob>"):
        export(export_config(lone, tmp_path))
