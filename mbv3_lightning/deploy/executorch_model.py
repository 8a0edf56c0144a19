"""ExecuTorch: a network as an XNNPACK-lowered ``.pte`` program, fp32 or int8, and its runner.

``torch.export`` captures the network at batch 1 (what a phone app runs; a static shape lets
XNNPACK plan its memory once) and ``to_edge_transform_and_lower`` hands every operator
XNNPACK supports to that backend, which is what ExecuTorch's Android and iOS runtimes execute
on the CPU. int8 is PT2E static quantisation with the XNNPACK quantizer (per-channel
symmetric weights, activations calibrated on real images), the recipe ExecuTorch documents
for XNNPACK.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mbv3_lightning.deploy.predictor import ModelInfo, Predictor
from mbv3_lightning.extras import require_extra

log = logging.getLogger(__name__)

SUFFIX = ".pte"
RUNTIME = "ExecuTorch XNNPACK"


def _example(input_size: int) -> tuple[torch.Tensor]:
    return (torch.zeros(1, 3, input_size, input_size),)


def _lower(program: torch.export.ExportedProgram) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    return edge.to_executorch().buffer


def program_bytes(net: torch.nn.Module, input_size: int) -> bytes:
    """The fp32 network as a ``.pte`` program whose ``forward`` takes ``(1, 3, S, S)``,
    ``S = input_size``."""
    require_extra("mobile", "format=executorch", ("executorch",))
    with torch.no_grad():
        return _lower(torch.export.export(net.eval(), _example(input_size)))


def int8_program_bytes(
    net: torch.nn.Module, info: ModelInfo, calibration: Sequence[torch.Tensor]
) -> bytes:
    """The network quantised to int8 (PT2E, XNNPACK quantizer), calibrated on ``calibration``
    (preprocessed ``(3, S, S)`` images), as a ``.pte`` program."""
    require_extra("mobile", "format=executorch quantize=int8", ("executorch",))
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not calibration:
        raise ValueError("int8 quantisation needs calibration images; none were found.")
    example = _example(info.input_size)
    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True)
    )
    with torch.no_grad():
        captured = torch.export.export(net.eval(), example).module()
        prepared = prepare_pt2e(captured, quantizer)
        log.info("Calibrating ExecuTorch int8 on %d images.", len(calibration))
        for image in calibration:  # one at a time: the captured graph is batch 1
            prepared(image.unsqueeze(0))
        quantized = convert_pt2e(prepared)
        return _lower(torch.export.export(quantized, example))


def set_threads(threads: int) -> None:
    """Size ExecuTorch's process-wide XNNPACK thread pool (default: one thread per core)."""
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    # "unsafe" only while a method is running; callers set it between runs.
    _unsafe_reset_threadpool(threads)


class ExecuTorchProgram:
    """A loaded ``.pte`` program and its ``forward`` method, run by ExecuTorch's Python
    runtime (the same XNNPACK kernels as on a phone)."""

    def __init__(self, model: bytes | Path) -> None:
        from executorch.runtime import Runtime

        # The method borrows from the program: running it after the program object is freed
        # crashes the process, so this object owns both.
        self._program: Any = Runtime.get().load_program(model)
        self._method: Any = self._program.load_method("forward")

    def forward(self, image: torch.Tensor) -> np.ndarray:
        """The logits of one ``(1, 3, S, S)`` image (the batch size it was exported at)."""
        return self._method.execute([image.float().contiguous()])[0].numpy()


class ExecuTorchPredictor(Predictor):
    """A ``.pte`` program run by ExecuTorch's Python runtime (the same XNNPACK kernels)."""

    runtime = RUNTIME

    def __init__(self, model: bytes | Path, info: ModelInfo, source: Path) -> None:
        require_extra("mobile", f"Running '{source.name}'", ("executorch",))
        super().__init__(info, source)
        self._program = ExecuTorchProgram(model)

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        # The program was exported at batch 1, as an app runs it: one image per call.
        return np.concatenate([self._program.forward(batch[i : i + 1]) for i in range(len(batch))])
