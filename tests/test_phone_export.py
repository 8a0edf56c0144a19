"""Phone exports (ExecuTorch .pte, LiteRT .tflite, Core ML) and exported files in predict and
evaluate: each file is run by its own runtime on the fixture's real test images.

The README's test command installs the phone extras, so CI runs the default tests here; in an
environment without them, the tests of a format skip with the install line as the reason.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from mbv3_lightning.cli.config import compose_config
from mbv3_lightning.deploy.export import ParityError, export
from mbv3_lightning.deploy.page import check_model, parse_arguments
from mbv3_lightning.deploy.predict import predict_paths
from mbv3_lightning.deploy.predictor import load_predictor
from mbv3_lightning.deploy.sidecar import read_sidecar
from mbv3_lightning.extras import EXTRAS, MissingExtraError, has_module
from mbv3_lightning.runs.manifest import manifest_samples
from mbv3_lightning.runs.record import RunRecord
from mbv3_lightning.runs.run_dir import RunDir

from .conftest import evaluate_exported, write_image

CLASSES = ["apple", "banana", "cherry"]
MOBILE, TFLITE = EXTRAS["mobile"], EXTRAS["tflite"]

# The phone extras are not part of [all] (docs/deploy-phone.md, "Install the runtimes"): without
# them these tests skip, naming the line that installs them.
needs_executorch = pytest.mark.skipif(
    not has_module("executorch"), reason=f"ExecuTorch is not installed: {MOBILE.install}"
)
needs_coremltools = pytest.mark.skipif(
    not has_module("coremltools"), reason=f"coremltools is not installed: {MOBILE.install}"
)
needs_litert = pytest.mark.skipif(
    not (has_module("litert_torch") and has_module("ai_edge_litert")),
    reason=f"litert-torch / ai-edge-litert are not installed: {TFLITE.install}",
)


def export_config(ckpt: Path, output_dir: Path, *overrides: str):
    """The real conf/export.yaml, with few latency runs to keep the suite fast."""
    return compose_config(
        "export",
        [f"ckpt_path={ckpt}", "latency_runs=3", *overrides],
        output_dir=output_dir,
        output_key="output_dir",
    )


def _rows(report: dict) -> dict[str, dict]:
    return {row["runtime"]: row for row in report["runtimes"]}


def _top1(predictor, paths: list[Path]) -> list[str]:
    return [p.classes[0][0] for p in predict_paths(predictor, paths, k=1, batch_size=5)]


def _test_paths(ckpt: Path) -> list[Path]:
    return [path for path, _ in manifest_samples(ckpt, ["test"])]


# ---- fast: no optional extra needed


def test_a_missing_extra_names_its_install_line_in_one_line(
    trained_checkpoint, tmp_path, monkeypatch, capsys
):
    """`mbv3 export format=executorch` where ExecuTorch cannot be imported (switched off in
    sys.modules, Python's own way, when it is installed): the command exits with one line
    naming the pip command, before any work."""
    from mbv3_lightning.cli.main import main

    monkeypatch.setitem(sys.modules, "executorch", None)
    monkeypatch.chdir(tmp_path)
    args = ["export", f"ckpt_path={trained_checkpoint}", "format=executorch"]
    with pytest.raises(SystemExit) as stopped:
        main([*args, f"hydra.run.dir={tmp_path}"])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f"mbv3 export: format=executorch needs {MOBILE.purpose}, which is not installed "
        f"(executorch). Install it: {MOBILE.install}"
    )
    assert not list(tmp_path.glob("*.pte"))


def test_predict_names_the_install_line_for_a_pte_without_executorch(tmp_path, monkeypatch, capsys):
    from mbv3_lightning.cli.main import main

    monkeypatch.setitem(sys.modules, "executorch", None)
    model = tmp_path / "mobilenet_v3_small.pte"
    model.write_bytes(b"")  # the runtime is asked for before the file is read
    photo = write_image(tmp_path / "photos" / "a.jpg", (200, 30, 30))  # inputs are checked first
    args = ["predict", f"ckpt_path={model}", f"inputs={photo}", f"hydra.run.dir={tmp_path}"]
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f"mbv3 predict: Running 'mobilenet_v3_small.pte' needs {MOBILE.purpose}, which is not "
        f"installed (executorch). Install it: {MOBILE.install}"
    )


def test_a_phone_model_without_its_sidecar_names_the_missing_file(tmp_path):
    model = tmp_path / "mobilenet_v3_small.tflite"
    model.write_bytes(b"not checked before the sidecar")
    with pytest.raises(FileNotFoundError, match=r"no 'mobilenet_v3_small.tflite.json' beside"):
        read_sidecar(model)
    (tmp_path / "mobilenet_v3_small.tflite.json").write_text('{"arch": "\\"x\\""}')
    with pytest.raises(ValueError, match="lacks the metadata class_names, input_size"):
        read_sidecar(model)


def test_int8_is_refused_for_formats_it_is_not_built_for(trained_checkpoint, tmp_path):
    cfg = export_config(trained_checkpoint, tmp_path, "format=tflite", "quantize=int8")
    with pytest.raises(ValueError, match="built for format=onnx and format=executorch"):
        export(cfg)


# ---- ExecuTorch


@needs_executorch
def test_executorch_fp32_and_int8_match_the_checkpoint_and_serve_every_command(
    trained_checkpoint, tmp_path
):
    """One export (fp32 and int8: the costly part, made once) checked as each command uses
    it: parity and latency rows, the int8 file beside fp32, predict, the web page, evaluate."""
    report = export(
        export_config(trained_checkpoint, tmp_path / "export", "format=executorch", "quantize=int8")
    )
    rows = _rows(report)
    fp32, int8 = rows["ExecuTorch XNNPACK"], rows["ExecuTorch XNNPACK int8"]
    assert fp32["max_softmax_diff"] <= 1e-4 and fp32["top1_agreement"] == 1.0
    assert report["threads"] >= 1 and report["verified"] is True
    for name in ("PyTorch eager", "ONNX Runtime", "ExecuTorch XNNPACK"):
        assert 0 < rows[name]["median_ms"] <= rows[name]["p95_ms"]
    model_path = Path(report["model_path"])
    assert model_path.suffix == ".pte" and model_path.stat().st_size > 1e6
    assert (model_path.parent / "labels.txt").read_text().split() == CLASSES

    # int8: smaller, scored on the test split beside fp32
    assert int8["size_mb"] < 0.5 * fp32["size_mb"]
    assert report["test_images"] == 12
    assert fp32["test_accuracy"] >= 0.9
    assert int8["test_accuracy"] >= fp32["test_accuracy"] - 0.1
    assert load_predictor(model_path.with_suffix(".int8.pte")).info.class_names == CLASSES

    # predict and the web page run the .pte: the checkpoint's top-1 for every test image
    predictor = load_predictor(model_path)
    assert predictor.runtime == "ExecuTorch XNNPACK" and predictor.info.class_names == CLASSES
    check_model(parse_arguments([f"ckpt_path={model_path}"]))
    paths = _test_paths(trained_checkpoint)
    assert _top1(predictor, paths) == _top1(load_predictor(trained_checkpoint), paths)

    # evaluate scores it as the checkpoint scored
    record = evaluate_exported(model_path, trained_checkpoint, tmp_path / "eval")
    trained = RunRecord.read(RunDir.of_checkpoint(trained_checkpoint).path)
    assert record.metrics["test/acc"] == pytest.approx(trained.metrics["test/acc"])
    assert record.environment.device == "cpu (ExecuTorch XNNPACK)"


@pytest.mark.slow
@needs_executorch
def test_a_pte_failing_parity_is_not_written(trained_checkpoint, tmp_path):
    cfg = export_config(trained_checkpoint, tmp_path, "format=executorch", "parity_tolerance=0")
    with pytest.raises(ParityError, match="ExecuTorch XNNPACK export differs"):
        export(cfg)
    assert not list(tmp_path.glob("*.pte"))


# ---- LiteRT


@needs_litert
def test_tflite_export_predict_and_evaluate_match_the_checkpoint(trained_checkpoint, tmp_path):
    report = export(export_config(trained_checkpoint, tmp_path / "export", "format=tflite"))
    row = _rows(report)["LiteRT"]
    assert row["max_softmax_diff"] <= 1e-4 and row["top1_agreement"] == 1.0
    assert 0 < row["median_ms"] <= row["p95_ms"]
    model_path = Path(report["model_path"])
    predictor = load_predictor(model_path)
    assert predictor.runtime == "LiteRT" and predictor.info.input_size == 32
    paths = _test_paths(trained_checkpoint)
    assert _top1(predictor, paths) == _top1(load_predictor(trained_checkpoint), paths)
    record = evaluate_exported(model_path, trained_checkpoint, tmp_path / "eval")
    trained = RunRecord.read(RunDir.of_checkpoint(trained_checkpoint).path)
    assert record.metrics["test/acc"] == pytest.approx(trained.metrics["test/acc"])


def test_tflite_without_the_interpreter_names_its_install_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    model = tmp_path / "m.tflite"
    model.write_bytes(b"")
    line = (
        f"needs {TFLITE.purpose}, which is not installed (ai_edge_litert). "
        f"Install it: {TFLITE.install}"
    )
    with pytest.raises(MissingExtraError, match=re.escape(line)):
        load_predictor(model)


# ---- Core ML


@pytest.mark.slow
@needs_coremltools
def test_coreml_export_writes_a_package_it_reports_unverified(trained_checkpoint, tmp_path):
    report = export(export_config(trained_checkpoint, tmp_path, "format=coreml"))
    package = Path(report["model_path"])
    assert package.suffix == ".mlpackage" and (package / "Manifest.json").is_file()
    assert report["verified"] is False
    assert read_sidecar(package).class_names == CLASSES


# ---- docs/deploy-phone.md: its commands are the ones tested (tests/test_docs.py composes
# them in the default suite; its slow suite skips the block, which needs the phone extras)

DOC = Path(__file__).resolve().parents[1] / "docs" / "deploy-phone.md"


def doc_commands() -> list[str]:
    """The shell lines of the page's ```bash blocks (```text blocks are install lines and
    phone-side steps, which the README's test command and a phone run instead)."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


@pytest.mark.slow
@needs_executorch
@needs_litert
@needs_coremltools
def test_the_phone_page_commands_run_and_meet_the_issue_bar(tmp_path):
    """The page's commands, in order, on the real demo: every export agrees with the
    checkpoint on all 250 test images, int8 is within 2 points of fp32, and predict on the
    .pte and .tflite gives the checkpoint's top-1 for every image."""
    import csv
    import os
    import subprocess

    (tmp_path / "data").symlink_to(DOC.parents[1] / "data")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in doc_commands():
        done = subprocess.run(
            line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3000
        )
        assert done.returncode == 0, (line, done.stderr[-3000:])
    phone = tmp_path / "outputs" / "phone"
    et = json.loads((phone / "executorch" / "export_report.json").read_text())
    lite = json.loads((phone / "tflite" / "export_report.json").read_text())
    assert et["parity_images"] == lite["parity_images"] == 250
    assert _rows(et)["ExecuTorch XNNPACK"]["top1_agreement"] == 1.0
    assert _rows(lite)["LiteRT"]["top1_agreement"] == 1.0
    fp32, int8 = _rows(et)["ExecuTorch XNNPACK"], _rows(et)["ExecuTorch XNNPACK int8"]
    assert int8["test_accuracy"] >= fp32["test_accuracy"] - 0.02
    checkpoint = load_predictor(tmp_path / "outputs" / "demo" / "checkpoints" / "best.ckpt")
    for folder in ("predict-pte", "predict-tflite"):
        with open(phone / folder / "predictions.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 250
        paths = [Path(row["path"]) for row in rows]
        assert [row["class_1"] for row in rows] == _top1(checkpoint, paths)
    assert json.loads((phone / "coreml" / "export_report.json").read_text())["verified"] is False
