"""``mbv3 export format=executorch|tflite|coreml``: build, check on this machine, then write.

The file is built in memory and run by its own runtime (ExecuTorch's or LiteRT's Python
runtime, the kernels a phone runs) on the same real images as eager PyTorch; only when it
passes the parity tolerance is it written, with its metadata sidecar and ``labels.txt``.
``quantize=int8`` (ExecuTorch) also writes ``<arch>.int8.pte`` and scores fp32 and int8 on
the test split. Core ML cannot run off macOS: its package is written and reported unverified.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from mbv3_lightning.deploy import coreml_model, executorch_model
from mbv3_lightning.deploy.phone import SUFFIXES, build_model, dense_copy, model_predictor
from mbv3_lightning.deploy.predictor import ModelInfo, Predictor
from mbv3_lightning.deploy.runtime_check import RuntimeReport, accuracy, benchmark, check_parity
from mbv3_lightning.deploy.sidecar import write_sidecars
from mbv3_lightning.extras import require_extra
from mbv3_lightning.runs.manifest import Samples
from mbv3_lightning.runs.run_dir import write_atomic

log = logging.getLogger(__name__)

# The extra each format needs to build and check its file, and the modules of it used.
_NEEDS = {
    "executorch": ("mobile", ("executorch",)),
    "tflite": ("tflite", ("litert_torch", "ai_edge_litert")),
    "coreml": ("mobile", ("coremltools",)),
}


@dataclass
class PhoneExport:
    """What the export has prepared: the network, its reference runtime, the parity batch,
    the thread count, and the table's rows so far (eager, ONNX Runtime)."""

    cfg: DictConfig
    net: torch.nn.Module
    info: ModelInfo
    eager: Predictor
    batch: torch.Tensor
    threads: int
    rows: dict[str, RuntimeReport]


def require_format(fmt: str, quantize: str | None = None) -> None:
    """Stop with the install line if the extra that builds ``fmt`` is missing."""
    task = f"format={fmt}" + (f" quantize={quantize}" if quantize else "")
    extra, modules = _NEEDS[fmt]
    require_extra(extra, task, modules)


def export_phone(
    job: PhoneExport, calibration: Sequence[torch.Tensor], test_samples: Samples
) -> tuple[Path, bool]:
    """Write the phone model (and its int8 copy) into ``output_dir`` once it passes parity;
    returns its path and whether it was checked here. Adds its rows to ``job.rows``."""
    cfg, info = job.cfg, job.info
    out_dir = Path(cfg.output_dir)
    model_path = out_dir / f"{info.arch}{SUFFIXES[cfg.format]}"
    if cfg.format == "coreml":
        coreml_model.write_mlpackage(dense_copy(job.net), info, model_path)
        write_sidecars(model_path, info)
        log.warning(
            "Wrote %s unverified: Core ML models run only on Apple platforms, and this command "
            "does not run them. Check it on a Mac, in Xcode or with coremltools' predict.",
            model_path,
        )
        return model_path, False
    if cfg.format == "executorch":
        executorch_model.set_threads(job.threads)
    fp32 = _checked(job, build_model(cfg.format, job.net, info), model_path)
    if cfg.quantize:
        int8_path = out_dir / f"{info.arch}.int8{SUFFIXES[cfg.format]}"
        int8_bytes = build_model(cfg.format, job.net, info, calibration)
        int8 = model_predictor(int8_bytes, model_path.suffix, info, int8_path, job.threads)
        name = f"{int8.runtime} int8"
        job.rows[name] = benchmark(name, int8, len(int8_bytes), job.eager, job.batch, _runs(job))
        write_atomic(int8_path, int8_bytes)
        write_sidecars(int8_path, info)
        if test_samples:
            job.rows[fp32.runtime].test_accuracy = accuracy(fp32, test_samples)
            job.rows[name].test_accuracy = accuracy(int8, test_samples)
        else:
            log.warning("No test images (test_dir= or a manifest test split): accuracy skipped.")
    return model_path, True


def _runs(job: PhoneExport) -> int:
    return int(job.cfg.latency_runs)


def _checked(job: PhoneExport, model: bytes, model_path: Path) -> Predictor:
    """Run ``model`` against eager, refuse it above the tolerance, else write it."""
    predictor = model_predictor(model, model_path.suffix, job.info, model_path, job.threads)
    row = benchmark(predictor.runtime, predictor, len(model), job.eager, job.batch, _runs(job))
    job.rows[row.runtime] = row
    check_parity(row, job.cfg.parity_tolerance, len(job.batch))
    write_atomic(model_path, model)
    write_sidecars(model_path, job.info)
    return predictor
