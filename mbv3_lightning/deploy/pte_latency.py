"""The batch-1 latency of a network as an ExecuTorch ``.pte`` program: a run's phone cost.

The network is lowered as ``mbv3 export format=executorch`` lowers it (a dense copy,
``torch.export`` at batch 1, XNNPACK) and the program is run by ExecuTorch's runtime on one
real, preprocessed image with ``threads`` XNNPACK threads: the kernels a phone's CPU runs, where
``test_ms_per_image`` times the eager network on the training device. Nothing is written: the
file a phone loads comes from ``mbv3 export`` (which also checks its parity).
"""

from __future__ import annotations

from typing import Any

import torch

from mbv3_lightning.deploy import executorch_model
from mbv3_lightning.deploy.phone import dense_copy
from mbv3_lightning.extras import require_extra
from mbv3_lightning.perf.latency import measure_latency

TASK = "pte_timing (the ExecuTorch .pte latency)"


def pte_latency(
    net: torch.nn.Module, images: torch.Tensor, *, threads: int, runs: int, warmup: int
) -> dict[str, Any]:
    """``pte_ms_per_image`` (median and p95 of ``runs`` calls after ``warmup``), the thread
    count and the program's size, for ``net`` on the first of ``images`` (preprocessed)."""
    require_extra("mobile", TASK, ("executorch",))
    if threads < 1 or runs < 1 or warmup < 0:
        raise ValueError(
            f"pte_timing needs threads >= 1, runs >= 1 and warmup >= 0; got {threads}, {runs} "
            f"and {warmup}."
        )
    image = images[:1].detach().float().cpu()  # one image on the CPU, as a phone runs it
    program = executorch_model.program_bytes(dense_copy(net).cpu(), image.shape[-1])
    executorch_model.set_threads(threads)  # process-wide; set between runs, never during one
    runner = executorch_model.ExecuTorchProgram(program)
    latency = measure_latency(lambda: runner.forward(image), runs, warmup=warmup)
    return {
        "pte_ms_per_image": {"median": latency.median_ms, "p95": latency.p95_ms},
        "pte_threads": threads,
        "pte_size_mb": round(len(program) / 1e6, 3),
    }
