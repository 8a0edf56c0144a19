"""LiteRT (formerly TensorFlow Lite): a network as a ``.tflite`` flatbuffer and its runner.

litert-torch converts the ``torch.export`` graph at batch 1 (what a phone app runs). The
input stays NCHW ``(1, 3, S, S)`` float32, as the ONNX and ExecuTorch files take it, so one
preprocessing (:class:`~mbv3_lightning.deploy.predictor.Predictor.preprocess`) feeds all of
them. The ``ai-edge-litert`` interpreter runs it with the XNNPACK delegate, as on Android.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mbv3_lightning.deploy.predictor import ModelInfo, Predictor
from mbv3_lightning.extras import require_extra

log = logging.getLogger(__name__)

SUFFIX = ".tflite"
RUNTIME = "LiteRT"


def tflite_bytes(net: torch.nn.Module, info: ModelInfo) -> bytes:
    """The fp32 network as a ``.tflite`` model whose input is ``(1, 3, S, S)``."""
    require_extra("tflite", "format=tflite")
    import litert_torch

    example = (torch.zeros(1, 3, info.input_size, info.input_size),)
    # The converter logs a line per lowered operator on the root logger; only its warnings
    # belong in the export's log.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        with torch.no_grad():
            return bytes(litert_torch.convert(net.eval(), example).model_content())
    finally:
        root.setLevel(level)


class LiteRTPredictor(Predictor):
    """A ``.tflite`` model run by the ``ai-edge-litert`` interpreter on the CPU."""

    runtime = RUNTIME

    def __init__(
        self, model: bytes | Path, info: ModelInfo, source: Path, threads: int | None = None
    ) -> None:
        require_extra("tflite", f"Running '{source.name}'", ("ai_edge_litert",))
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(info, source)
        if isinstance(model, bytes):
            self._interpreter: Any = Interpreter(model_content=model, num_threads=threads)
        else:
            self._interpreter = Interpreter(model_path=str(model), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        # Batch 1, as converted. get_tensor returns a copy, so no view into the
        # interpreter's buffers outlives a call (the interpreter refuses to run while one does).
        rows = []
        for i in range(len(batch)):
            self._interpreter.set_tensor(self._input, batch[i : i + 1].float().numpy())
            self._interpreter.invoke()
            rows.append(self._interpreter.get_tensor(self._output))
        return np.concatenate(rows)
