"""How an export is checked against eager PyTorch: one table row per runtime.

Size, batch-1 latency, the largest softmax difference and the top-1 agreement on the same
real, preprocessed images, and (for int8) top-1 accuracy on labelled test images. Shared by
the ONNX / TorchScript and the phone exports, so every row is measured the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mbv3_lightning.data.images import load_rgb
from mbv3_lightning.deploy.predictor import Predictor, softmax
from mbv3_lightning.perf.latency import measure_latency
from mbv3_lightning.runs.manifest import Samples


class ParityError(RuntimeError):
    """An export whose outputs differ from eager PyTorch by more than the tolerance."""


@dataclass
class RuntimeReport:
    """One row of the comparison table."""

    runtime: str
    size_mb: float
    median_ms: float
    p95_ms: float
    max_softmax_diff: float | None = None
    top1_agreement: float | None = None
    test_accuracy: float | None = None


def max_softmax_diff(reference: Predictor, candidate: Predictor, batch: torch.Tensor) -> float:
    """Largest |softmax difference| between two runtimes on the same preprocessed batch."""
    diff = softmax(reference.logits(batch)) - softmax(candidate.logits(batch))
    return float(np.abs(diff).max())


def accuracy(predictor: Predictor, samples: Samples, batch_size: int = 32) -> float:
    """Top-1 accuracy on labelled image files."""
    correct = 0
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        probabilities = predictor.predict([load_rgb(path) for path, _ in chunk])
        correct += int((probabilities.argmax(axis=1) == [label for _, label in chunk]).sum())
    return correct / len(samples)


def benchmark(
    name: str,
    predictor: Predictor,
    size_bytes: int,
    eager: Predictor,
    batch: torch.Tensor,
    runs: int,
) -> RuntimeReport:
    """Batch-1 latency, size and (unless it is the reference) the softmax gap to eager."""
    latency = measure_latency(lambda: predictor.logits(batch[:1]), runs)
    row = RuntimeReport(name, size_bytes / 1e6, latency.median_ms, latency.p95_ms)
    if predictor is not eager:
        row.max_softmax_diff = max_softmax_diff(eager, predictor, batch)
        agree = eager.logits(batch).argmax(1) == predictor.logits(batch).argmax(1)
        row.top1_agreement = float(agree.mean())
    return row


def check_parity(row: RuntimeReport, tolerance: float, images: int) -> None:
    """Raise :class:`ParityError` when ``row`` differs from eager by more than ``tolerance``."""
    diff = row.max_softmax_diff
    if diff is not None and diff > tolerance:
        raise ParityError(
            f"{row.runtime} export differs from eager PyTorch by {diff:.2e} "
            f"(max |softmax difference| on {images} images), above parity_tolerance="
            f"{tolerance}. Nothing was written."
        )
