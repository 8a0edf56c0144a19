"""The phone formats in one table: ``format=`` name, file suffix, how to build and run each.

export builds through :func:`build_model` and checks through :func:`model_predictor`;
predict, evaluate and the web page open files through :func:`load_phone_predictor` (called
by :func:`~mbv3_lightning.deploy.predictor.load_predictor` for these suffixes).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch

from mbv3_lightning.deploy import executorch_model, litert_model
from mbv3_lightning.deploy.predictor import ModelInfo, Predictor
from mbv3_lightning.deploy.sidecar import read_sidecar
from mbv3_lightning.extras import require_extra

# format= value -> suffix of the file it writes (coreml: a folder, not runnable here).
SUFFIXES = {
    "executorch": executorch_model.SUFFIX,
    "tflite": litert_model.SUFFIX,
    "coreml": ".mlpackage",
}
# Files this machine can run, by suffix: the extra and the module of it that runs each.
_RUNTIMES = {
    executorch_model.SUFFIX: ("mobile", "executorch"),
    litert_model.SUFFIX: ("tflite", "ai_edge_litert"),
}


def dense_copy(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` with NCHW-contiguous weights: the predictors run channels_last
    (faster in eager), and XNNPACK's lowering expects contiguous weights to re-layout."""
    return copy.deepcopy(net).to(memory_format=torch.contiguous_format).eval()


def build_model(
    fmt: str,
    net: torch.nn.Module,
    info: ModelInfo,
    calibration: Sequence[torch.Tensor] | None = None,
) -> bytes:
    """The network as a ``.pte`` or ``.tflite`` file's bytes; ``calibration`` (preprocessed
    images) makes an int8 ExecuTorch program."""
    net = dense_copy(net)
    if fmt == "executorch":
        if calibration is not None:
            return executorch_model.int8_program_bytes(net, info, calibration)
        return executorch_model.program_bytes(net, info.input_size)
    if fmt == "tflite":
        if calibration is not None:
            raise ValueError("quantize=int8 is built for format=onnx and format=executorch.")
        return litert_model.tflite_bytes(net, info)
    raise ValueError(f"No runnable phone format '{fmt}'; expected executorch or tflite.")


def model_predictor(
    model: bytes | Path, suffix: str, info: ModelInfo, source: Path, threads: int | None = None
) -> Predictor:
    """A predictor for a phone model (bytes in memory or a file) of the given suffix.

    ``threads`` sizes LiteRT's interpreter; ExecuTorch's pool is process-wide
    (:func:`executorch_model.set_threads`).
    """
    if suffix == executorch_model.SUFFIX:
        return executorch_model.ExecuTorchPredictor(model, info, source)
    if suffix == litert_model.SUFFIX:
        return litert_model.LiteRTPredictor(model, info, source, threads)
    raise ValueError(f"'{source}': no runtime here for {suffix} files.")


def load_phone_predictor(path: Path) -> Predictor:
    """A ``.pte`` or ``.tflite`` export, with the metadata its sidecar carries."""
    suffix = path.suffix.lower()
    # The install line first: without the runtime nothing else about the file matters.
    extra, module = _RUNTIMES[suffix]
    require_extra(extra, f"Running '{path.name}'", (module,))
    return model_predictor(path, suffix, read_sidecar(path), path)
