"""Batch-1 inference latency, eager vs TorchScript vs ONNX Runtime, every registry model.

Uses the export command's own converters (`mbv3_lightning.deploy.export`) and predictors, so the
numbers are those of the files a user deploys.
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path

import torch

from mbv3_lightning.deploy.export import onnx_bytes, torchscript_module
from mbv3_lightning.deploy.predictor import ModelInfo, OnnxPredictor, TorchPredictor
from mbv3_lightning.models.registry import create_model, get_spec, list_models
from mbv3_lightning.perf.latency import measure_latency

GOAL = 3.0  # ONNX Runtime vs eager, mobilenet_v3_small at 224 px
OPSET = 17


def _info(name: str, size: int) -> ModelInfo:
    spec = get_spec(name)
    return ModelInfo(
        arch=name,
        class_names=[str(i) for i in range(10)],
        input_size=size,
        mean=tuple(spec.mean),
        std=tuple(spec.std),
    )


def run(device: str, quick: bool) -> dict:
    del device  # batch-1 deployment latency is a CPU question here; ONNX Runtime runs on CPU
    rows = []
    runs = 20 if quick else 50
    models = ["mobilenet_v3_small"] if quick else list_models()
    for name in models:
        size = get_spec(name).input_size
        net = create_model(name, 10).eval()
        info = _info(name, size)
        image = torch.randn(1, 3, size, size)
        source = Path(f"{name}.bench")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictors = {
                "eager": TorchPredictor(net, info, source),
                "torchscript": TorchPredictor(torchscript_module(net, info), info, source),
                "onnxruntime": OnnxPredictor(onnx_bytes(net, info, OPSET), info, source),
            }
        latency = {
            runtime: measure_latency(partial(predictor.logits, image), runs, warmup=10)
            for runtime, predictor in predictors.items()
        }
        rows.append(
            {
                "model": name,
                "input_size": size,
                **{f"{r}_ms": round(lat.median_ms, 2) for r, lat in latency.items()},
                **{f"{r}_p95_ms": round(lat.p95_ms, 2) for r, lat in latency.items()},
                "onnx_speedup": round(
                    latency["eager"].median_ms / latency["onnxruntime"].median_ms, 2
                ),
            }
        )
    key = next(r for r in rows if r["model"] == "mobilenet_v3_small")
    return {
        "title": "Batch-1 CPU inference latency (ms): eager vs TorchScript vs ONNX Runtime",
        "goal": f"ONNX Runtime >= {GOAL}x eager for mobilenet_v3_small at 224 px",
        "ratio": key["onnx_speedup"],
        "met": key["onnx_speedup"] >= GOAL,
        "rows": rows,
    }
