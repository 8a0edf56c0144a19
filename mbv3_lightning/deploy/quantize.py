"""ONNX Runtime static int8 quantisation, calibrated on real training images.

Static (QDQ, per-channel weights) rather than dynamic: dynamic quantisation only covers
MatMul/Gemm well, and a convolutional network like MobileNetV3 is almost all Conv, whose
dynamic ConvInteger kernels are slower than fp32 on the CPU.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from mbv3_lightning.data.images import load_rgb
from mbv3_lightning.deploy.predictor import Predictor

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 8


class _ImageCalibration(CalibrationDataReader):
    """Feeds preprocessed calibration images, a few at a time, to the calibrator."""

    def __init__(self, predictor: Predictor, paths: Sequence[Path], input_name: str) -> None:
        self._batches = self._read(predictor, paths, input_name)

    @staticmethod
    def _read(
        predictor: Predictor, paths: Sequence[Path], input_name: str
    ) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(paths), CALIBRATION_BATCH):
            images = [load_rgb(p) for p in paths[start : start + CALIBRATION_BATCH]]
            yield {input_name: predictor.preprocess(images).numpy()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_int8(
    fp32_path: Path, int8_path: Path, predictor: Predictor, calibration: Sequence[Path]
) -> None:
    """Write a static int8 (QDQ) copy of ``fp32_path``; metadata_props are carried over."""
    import onnx

    if not calibration:
        raise ValueError("int8 quantisation needs calibration images; none were found.")
    log.info("Calibrating int8 quantisation on %d images.", len(calibration))
    with tempfile.TemporaryDirectory() as scratch:
        # Shape inference + graph folding first, as ONNX Runtime recommends before quantising.
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        input_name = onnx.load(str(prepared)).graph.input[0].name
        quantize_static(
            str(prepared),
            str(int8_path),
            _ImageCalibration(predictor, calibration, input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    fp32_metadata = onnx.load(str(fp32_path), load_external_data=False).metadata_props
    quantized = onnx.load(str(int8_path))
    onnx.helper.set_model_props(quantized, {p.key: p.value for p in fp32_metadata})
    onnx.save(quantized, str(int8_path))
