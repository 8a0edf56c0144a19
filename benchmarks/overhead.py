"""Framework overhead: `Trainer.fit` with ImageClassifier vs a bare PyTorch loop, all else equal.

Both variants build the same network, optimiser and in-memory batches; only the steady-state
steps after a warm-up are timed, so the ratio is the per-step cost of the framework
(Lightning's loop, logging, this project's torchmetrics updates), not start-up.

On the CPU: batch 32 at 100 and 224 px, full precision, batches in RAM. On CUDA: batch 32 and
256 at 100 and 224 px, the GPU trainer config's precision (bf16-mixed: the bare loop runs under
``torch.autocast("cuda", dtype=torch.bfloat16)``), cuDNN autotuning on for both sides, and the
batches already on the GPU (a few distinct ones, cycled), so neither side pays a host-to-device
copy that would hide the framework's own cost behind the bus.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.timing import interleaved, median, mixed_precision, sync
from mbv3_lightning.cli.config import CONFIG_NAME, compose_config
from mbv3_lightning.models.memory_format import batch_memory_format
from mbv3_lightning.models.registry import create_model
from mbv3_lightning.training.module import ImageClassifier
from mbv3_lightning.training.optim import make_optimizer, node_factory

GOAL = 0.97  # on the CPU
GOAL_CUDA = 0.95
NUM_CLASSES = 10
WARMUP_STEPS = 2
# (input size, batch, steps) per cell. CPU: enough steps that a run lasts seconds: with about
# a second (the first version), the ratio swung between 0.93 and 1.15 from run to run here.
CPU_CELLS = ((100, 32, 40), (224, 32, 16))
# CUDA: a few hundred steps, so a run lasts a second or two on a current GPU (an assumption:
# steps of about 5 ms at batch 32, where the GPU waits for the CPU to launch its kernels, and
# about 20 ms at 224 px and batch 256, the step time of a 12,000 images/s random-tensor ceiling
# for this network); more warm-up steps, for cuDNN's autotuning of the first ones.
CUDA_CELLS = ((100, 32, 300), (224, 32, 250), (100, 256, 250), (224, 256, 80))
CUDA_WARMUP_STEPS = 10
CUDA_DISTINCT_BATCHES = 4
OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3, "weight_decay": 0.05}


def _loader(size: int, batch: int, steps: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch * steps, 3, size, size, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch * steps,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=batch, shuffle=False)


def _device_loader(size: int, batch: int, steps: int, device: str) -> DataLoader:
    """``steps`` batches already on ``device``: a few distinct random ones, cycled (no copies).

    ``batch_size=None``: the loader hands each stored batch on as it is.
    """
    generator = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(batch, 3, size, size, generator=generator).to(device),
            torch.randint(0, NUM_CLASSES, (batch,), generator=generator).to(device),
        )
        for _ in range(CUDA_DISTINCT_BATCHES)
    ]
    return DataLoader([batches[i % len(batches)] for i in range(steps)], batch_size=None)


def gpu_precision() -> str:
    """The precision of the project's GPU trainer config (`trainer=gpu`)."""
    return str(compose_config(CONFIG_NAME, ["trainer=gpu"]).trainer.precision)


def _bare_loop(
    loader: DataLoader, device: str, warmup: int = WARMUP_STEPS, precision: str | None = None
) -> float:
    """Seconds for the steps after the warm-up."""
    torch.manual_seed(0)
    net = create_model("mobilenet_v3_small", NUM_CLASSES, bn_momentum=0.1).train()
    # The layout ImageClassifier trains in on this device by default (channels_last=auto).
    memory_format = batch_memory_format("auto", device)
    net = net.to(device, memory_format=memory_format)
    # the classifier's own optimiser, made as configure_optimizers makes it
    opt = make_optimizer(node_factory(OPTIMIZER), net.parameters())
    start = 0.0
    for step, (images, labels) in enumerate(loader):
        if step == warmup:
            sync(device)
            start = time.perf_counter()
        images = images.to(device).contiguous(memory_format=memory_format)
        labels = labels.to(device)
        opt.zero_grad(set_to_none=True)
        with mixed_precision(device, precision):
            loss = F.cross_entropy(net(images), labels)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


class _StepClock(L.Callback):
    """Starts the clock at the first step after the warm-up, stops it when training ends."""

    def __init__(self, device: str, warmup: int = WARMUP_STEPS) -> None:
        self.device, self.warmup, self.start, self.seconds = device, warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self.start


def _lightning_fit(
    loader: DataLoader,
    device: str,
    size: int,
    warmup: int = WARMUP_STEPS,
    precision: str | None = None,
) -> float:
    torch.manual_seed(0)
    model = ImageClassifier(
        {"arch": "mobilenet_v3_small", "bn_momentum": 0.1},
        NUM_CLASSES,
        input_size=size,
        optimizer=OPTIMIZER,
        scheduler=None,
    )
    clock = _StepClock(device, warmup)
    # The GPU cells: the GPU trainer's precision, and cuDNN autotuning as the bare loop has it.
    gpu = {"precision": precision, "benchmark": True} if precision is not None else {}
    trainer = L.Trainer(
        accelerator="gpu" if device.startswith("cuda") else "cpu",
        devices=1,
        **gpu,
        max_epochs=1,
        logger=False,
        callbacks=[clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(model, train_dataloaders=loader)
    return clock.seconds


def run(device: str, quick: bool) -> dict:
    logging.getLogger("lightning").setLevel(logging.WARNING)
    if device.startswith("cuda"):
        return _run_cuda(quick)
    rows = []
    for size, batch, steps in CPU_CELLS:
        steps = WARMUP_STEPS + (steps - WARMUP_STEPS) // 2 if quick else steps
        loader = _loader(size, batch, steps)
        times = interleaved(
            {
                "bare": partial(_bare_loop, loader, device),
                "lightning": partial(_lightning_fit, loader, device, size),
            },
            repeats=2 if quick else 4,  # even: each variant runs first equally often
        )
        timed_images = batch * (steps - WARMUP_STEPS)
        bare, lit = (timed_images / median(times[k]) for k in ("bare", "lightning"))
        rows.append(
            {
                "model": "mobilenet_v3_small",
                "input_size": size,
                "batch": batch,
                "timed_steps": steps - WARMUP_STEPS,
                "bare_img_s": round(bare, 1),
                "lightning_img_s": round(lit, 1),
                "ratio": round(lit / bare, 3),
            }
        )
    return _result(rows, GOAL)


def measure_cuda_cell(
    size: int, batch: int, steps: int, repeats: int, precision: str, device: str = "cuda"
) -> dict:
    """One CUDA cell: both variants on batches already on the GPU, ``repeats`` rounds each."""
    loader = _device_loader(size, batch, steps, device)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        times = interleaved(
            {
                "bare": partial(_bare_loop, loader, device, CUDA_WARMUP_STEPS, precision),
                "lightning": partial(
                    _lightning_fit, loader, device, size, CUDA_WARMUP_STEPS, precision
                ),
            },
            repeats=repeats,
        )
    finally:
        torch.backends.cudnn.benchmark = benchmark
    timed = steps - CUDA_WARMUP_STEPS
    bare, lit = (batch * timed / median(times[k]) for k in ("bare", "lightning"))
    return {
        "model": "mobilenet_v3_small",
        "input_size": size,
        "batch": batch,
        "precision": precision,
        "timed_steps": timed,
        "bare_img_s": round(bare, 1),
        "lightning_img_s": round(lit, 1),
        "bare_ms_step": round(1000 * median(times["bare"]) / timed, 3),
        "lightning_ms_step": round(1000 * median(times["lightning"]) / timed, 3),
        "ratio": round(lit / bare, 3),
    }


def _run_cuda(quick: bool) -> dict:
    precision = gpu_precision()
    rows = [
        measure_cuda_cell(size, batch, steps, 2 if quick else 4, precision)
        for size, batch, steps in CUDA_CELLS
    ]
    return _result(rows, GOAL_CUDA)


def _result(rows: list[dict], goal: float) -> dict:
    worst = min(r["ratio"] for r in rows)
    return {
        "title": "Framework overhead: Trainer.fit vs bare loop (training images/s)",
        "goal": f"ratio >= {goal}",
        "ratio": worst,
        "met": worst >= goal,
        "rows": rows,
    }
