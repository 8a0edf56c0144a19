"""`mbv3 export ckpt_path=<ckpt> format=onnx|torchscript|executorch|tflite|coreml [quantize=int8]`.

Writes the model with its class names and preprocessing, proves it computes what eager
PyTorch computes on real images (max |softmax difference|), and compares file size and
batch-1 latency of eager PyTorch, ONNX Runtime and the written runtime (and int8) in one
table, every runtime on the same number of threads. The phone formats are built and checked
by :mod:`mbv3_lightning.deploy.phone_export`.

ONNX goes through the TorchScript-based exporter (``dynamo=False``): it needs no
``onnxscript`` and its graph ran batch-1 inference faster here than the dynamo export.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from rich.table import Table

from mbv3_lightning.data.images import load_rgb
from mbv3_lightning.deploy.phone import SUFFIXES
from mbv3_lightning.deploy.phone_export import PhoneExport, export_phone, require_format
from mbv3_lightning.deploy.predict import resolve_inputs
from mbv3_lightning.deploy.predictor import (
    ModelInfo,
    OnnxPredictor,
    TorchPredictor,
    TorchScriptPredictor,
    load_checkpoint_network,
    torchscript_sidecar,
)
from mbv3_lightning.deploy.runtime_check import (
    ParityError,
    RuntimeReport,
    accuracy,
    benchmark,
    check_parity,
)
from mbv3_lightning.models.hparams import read_checked_hparams
from mbv3_lightning.runs.manifest import (
    Samples,
    class_keys_of_run,
    folder_samples,
    image_files,
    manifest_samples,
)
from mbv3_lightning.runs.run_dir import write_atomic

log = logging.getLogger(__name__)

__all__ = ["FORMATS", "ParityError", "export", "onnx_bytes", "render_report", "torchscript_module"]

FORMATS = ("onnx", "torchscript", "executorch", "tflite", "coreml")
# Formats quantize=int8 is built for: ONNX Runtime static QDQ, ExecuTorch PT2E + XNNPACK.
INT8_FORMATS = ("onnx", "executorch")
INPUT_NAME, OUTPUT_NAME = "images", "logits"


def onnx_bytes(net: torch.nn.Module, info: ModelInfo, opset: int) -> bytes:
    """The network as ONNX with a dynamic batch axis and ``info`` in ``metadata_props``."""
    import onnx

    example = torch.zeros(1, 3, info.input_size, info.input_size)
    buffer = io.BytesIO()
    with _torchscript_deprecation_silenced():
        # The TorchScript-based exporter is the deliberate choice (see the module docstring).
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message="The feature will be removed", module="torch")
        torch.onnx.export(
            net,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works as well as a path
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, info.to_metadata())
    onnx.checker.check_model(model)
    return model.SerializeToString()


def torchscript_module(net: torch.nn.Module, info: ModelInfo) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of the network; tracing keeps the batch axis free."""
    example = torch.zeros(2, 3, info.input_size, info.input_size)
    with _torchscript_deprecation_silenced(), torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(net.eval(), example))


def _torchscript_bytes(module: torch.jit.ScriptModule) -> bytes:
    buffer = io.BytesIO()
    with _torchscript_deprecation_silenced():
        torch.jit.save(module, buffer)
    return buffer.getvalue()


@contextmanager
def _torchscript_deprecation_silenced() -> Iterator[None]:
    """torch 2.14 deprecates torch.jit; TorchScript is still what C++/mobile runtimes load."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit.*")
        yield


def _state_dict_bytes(net: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _parity_images(cfg: DictConfig, ckpt_path: Path) -> list[Path]:
    if cfg.images:
        paths = resolve_inputs(str(cfg.images))
    else:
        paths = [path for path, _ in manifest_samples(ckpt_path, ("test", "val"))]
    if not paths:
        raise FileNotFoundError(
            f"No images for the parity check: '{ckpt_path}' is not inside a run directory with "
            "split_manifest.json. Point `images=<folder or glob>` at a few real images."
        )
    # Spread the picks over the classes (manifests are sorted by class).
    step = max(1, len(paths) // cfg.max_parity_images)
    return paths[::step][: cfg.max_parity_images]


def _calibration_images(cfg: DictConfig, ckpt_path: Path) -> list[Path]:
    if cfg.calibration_dir:
        paths = image_files(Path(cfg.calibration_dir))
    else:
        paths = [path for path, _ in manifest_samples(ckpt_path, ("train",))]
    if not paths:
        raise FileNotFoundError(
            "No calibration images for int8: the checkpoint's run directory has no "
            "split_manifest.json with a train split. Pass `calibration_dir=<folder of images>`."
        )
    rng = np.random.default_rng(0)  # a seeded sample, so the int8 model is reproducible
    picks = rng.choice(len(paths), size=min(cfg.calibration_size, len(paths)), replace=False)
    return [paths[i] for i in sorted(picks)]


def _test_samples(cfg: DictConfig, ckpt_path: Path, info: ModelInfo) -> Samples:
    if cfg.test_dir:
        labels = {name: i for i, name in enumerate(info.class_names)}
        labels |= {key: i for i, key in enumerate(class_keys_of_run(ckpt_path))}
        return folder_samples(Path(cfg.test_dir), labels)
    return manifest_samples(ckpt_path, ("test",))


def _validate(cfg: DictConfig) -> Path:
    if cfg.format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got '{cfg.format}'.")
    if cfg.quantize not in (None, "int8"):
        raise ValueError(f"quantize must be null or int8, got '{cfg.quantize}'.")
    if cfg.quantize and cfg.format not in INT8_FORMATS:
        raise ValueError(
            f"quantize=int8 is built for format={' and format='.join(INT8_FORMATS)}, not "
            f"format={cfg.format}."
        )
    ckpt_path = Path(cfg.ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"Checkpoint '{ckpt_path}' does not exist.")
    read_checked_hparams(ckpt_path)  # weights-only and checked, before anything else reads it
    return ckpt_path


def export(cfg: DictConfig) -> dict[str, Any]:
    """Export, check parity, benchmark, optionally quantise; returns the report it saves."""
    ckpt_path = _validate(cfg)
    if cfg.format in SUFFIXES:
        require_format(cfg.format, cfg.quantize)  # a missing extra fails before any work
    # Find every image first, so a missing folder fails before minutes of exporting.
    parity_paths = _parity_images(cfg, ckpt_path)
    calibration = _calibration_images(cfg, ckpt_path) if cfg.quantize else []
    # One thread count for every runtime in the table, so the latencies compare.
    threads = cfg.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    net, info = load_checkpoint_network(ckpt_path)
    eager = TorchPredictor(net, info, ckpt_path)
    onnx_model = onnx_bytes(net, info, cfg.opset)
    onnx_fp32 = OnnxPredictor(onnx_model, info, ckpt_path, threads)
    batch = eager.preprocess([load_rgb(p) for p in parity_paths])
    runs = cfg.latency_runs
    rows = {
        row.runtime: row
        for row in (
            benchmark("PyTorch eager", eager, _state_dict_bytes(net), eager, batch, runs),
            benchmark("ONNX Runtime", onnx_fp32, len(onnx_model), eager, batch, runs),
        )
    }
    if cfg.format in SUFFIXES:
        calibration_images = [eager.preprocess([load_rgb(p)])[0] for p in calibration]
        test_samples = _test_samples(cfg, ckpt_path, info) if cfg.quantize else []
        model_path, verified = export_phone(
            PhoneExport(cfg, net, info, eager, batch, threads, rows),
            calibration_images,
            test_samples,
        )
        return _save_report(
            cfg, info, model_path, parity_paths, test_samples, threads, rows, verified
        )
    script = torchscript_module(net, info)
    rows["TorchScript"] = benchmark(
        "TorchScript",
        TorchScriptPredictor(script, info, ckpt_path),
        len(_torchscript_bytes(script)),
        eager,
        batch,
        runs,
    )
    written = "ONNX Runtime" if cfg.format == "onnx" else "TorchScript"
    check_parity(rows[written], cfg.parity_tolerance, len(parity_paths))

    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.format == "onnx":
        model_path = out_dir / f"{info.arch}.onnx"
        write_atomic(model_path, onnx_model)
    else:
        model_path = out_dir / f"{info.arch}.pt"
        torchscript_sidecar(model_path).write_text(json.dumps(info.to_metadata(), indent=1))
        write_atomic(model_path, _torchscript_bytes(script))

    test_samples = _test_samples(cfg, ckpt_path, info) if cfg.quantize else []
    if cfg.quantize:
        from mbv3_lightning.deploy.quantize import quantize_int8

        int8_path = out_dir / f"{info.arch}.int8.onnx"
        quantize_int8(model_path, int8_path, eager, calibration)
        int8 = OnnxPredictor(int8_path, info, int8_path, threads)
        size = int8_path.stat().st_size
        rows["ONNX Runtime int8"] = benchmark("ONNX Runtime int8", int8, size, eager, batch, runs)
        if test_samples:
            rows["ONNX Runtime"].test_accuracy = accuracy(onnx_fp32, test_samples)
            rows["ONNX Runtime int8"].test_accuracy = accuracy(int8, test_samples)
        else:
            log.warning("No test images (test_dir= or a manifest test split): accuracy skipped.")

    return _save_report(cfg, info, model_path, parity_paths, test_samples, threads, rows, True)


def _save_report(
    cfg: DictConfig,
    info: ModelInfo,
    model_path: Path,
    parity_paths: list[Path],
    test_samples: Samples,
    threads: int,
    rows: dict[str, RuntimeReport],
    verified: bool,
) -> dict[str, Any]:
    """``export_report.json``: what was written, how it was checked, the table's rows."""
    report = {
        "model": info.arch,
        "input_size": info.input_size,
        "format": cfg.format,
        "model_path": str(model_path),
        # False only for Core ML off macOS: written, but no runtime here could check it.
        "verified": verified,
        "parity_images": len(parity_paths),
        "test_images": len(test_samples),
        "threads": threads,
        "runtimes": [asdict(row) for row in rows.values()],
    }
    write_atomic(Path(cfg.output_dir) / "export_report.json", json.dumps(report, indent=2))
    return report


def render_report(report: dict[str, Any]) -> Table:
    """Size, batch-1 latency and agreement with eager PyTorch, one row per runtime."""
    threads = report["threads"]
    title = f"{report['model']} at {report['input_size']} px, batch 1, {threads} CPU thread"
    table = Table(title=title + ("" if threads == 1 else "s"))
    for column in (
        "runtime",
        "size (MB)",
        "median (ms)",
        "p95 (ms)",
        "max |Δ softmax|",
        "top-1 agreement",
        "test accuracy",
    ):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    for row in report["runtimes"]:
        diff = row["max_softmax_diff"]
        accuracy_cell = row["test_accuracy"]
        table.add_row(
            row["runtime"],
            f"{row['size_mb']:.2f}",
            f"{row['median_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
            "reference" if diff is None else f"{diff:.1e}",
            "" if diff is None else f"{row['top1_agreement']:.1%}",
            "" if accuracy_cell is None else f"{accuracy_cell:.4f}",
        )
    return table
