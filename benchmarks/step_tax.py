"""Per-step framework tax: milliseconds the project adds to every training step.

The same training step with a network that costs almost nothing (global average pooling and
one Linear layer), once through ``Trainer.fit`` with the project's ``ImageClassifier``, its
metrics, logging and callbacks as the default training config builds them, and once as a bare
loop (forward, loss, backward, optimiser and learning-rate schedule steps). With the model
nearly free, the difference per step is what the framework itself costs: metric updates,
logging, host-device synchronisation, callbacks. It is measurable on any machine, unlike the
GPU overhead it stands for.

Differences from a real run, all outside what is timed or irrelevant to it: the progress bar
is off (the default config shows one on a terminal; sweeps and studies switch it off), there
is no validation (only training steps are timed), and the classifier is built for the default
architecture and then given the trivial network as ``net`` (the registry builds only real
architectures; everything else in the module is unchanged).

Timing runs from the start of one training batch to the start of the next (``on_train_batch_
start``), so each timed step holds everything Lightning and the callbacks do between batches,
logging every ``log_every_n_steps`` included; the bare loop is timed the same way.
"""

from __future__ import annotations

import logging
import tempfile
import time
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.timing import interleaved, median, sync
from mbv3_lightning.cli.config import compose_config
from mbv3_lightning.models.memory_format import batch_memory_format
from mbv3_lightning.training.optim import make_optimizer, make_scheduler, node_factory

GOAL_MS = 1.0  # framework milliseconds per training step
NUM_CLASSES = 10
BATCH = 32
SIZE = 32  # pixels: small images, already in memory
WARMUP_STEPS = 5


class TrivialNet(nn.Module):
    """Global average pooling and one Linear layer: a network that costs almost nothing."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(images).flatten(1))


def _loader(steps: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH * steps, 3, SIZE, SIZE, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (BATCH * steps,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=BATCH, shuffle=False)


def _config(device: str, output_dir: str) -> DictConfig:
    """The default training config, one epoch, no progress bar."""
    return compose_config(
        "train",
        [
            "callbacks.progress_bar=null",
            "trainer.max_epochs=1",
            f"trainer.accelerator={'gpu' if device.startswith('cuda') else 'cpu'}",
        ],
        output_dir=output_dir,
    )


def _bare_loop(loader: DataLoader, device: str) -> float:
    """Seconds of the timed steps: from the start of step WARMUP_STEPS to that of the last."""
    cfg = _config(device, tempfile.gettempdir())  # only its optimiser and schedule are read
    torch.manual_seed(0)
    net = TrivialNet(NUM_CLASSES).to(device).train()
    opt = make_optimizer(node_factory(cfg.optimizer), net.parameters())
    scheduler = make_scheduler(
        node_factory(cfg.scheduler),
        opt,
        total_steps=len(loader),
        steps_per_epoch=len(loader),
    )
    # the layout the classifier trains in on this device (channels_last=auto)
    memory_format = batch_memory_format("auto", device)
    start = 0.0
    last = len(loader) - 1
    for step, (images, labels) in enumerate(loader):
        if step == WARMUP_STEPS:
            sync(device)
            start = time.perf_counter()
        if step == last:
            sync(device)
            return time.perf_counter() - start
        images = images.to(device).contiguous(memory_format=memory_format)
        labels = labels.to(device)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(images), labels).backward()
        opt.step()
        scheduler.step()
    raise ValueError(f"The loader has {len(loader)} batches; the clock needs > {WARMUP_STEPS}.")


class _StepClock(L.Callback):
    """Seconds from the start of batch WARMUP_STEPS to the start of the last batch."""

    def __init__(self, device: str, last: int) -> None:
        self.device, self.last, self.start, self.seconds = device, last, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx in (WARMUP_STEPS, self.last):
            sync(self.device)
            now = time.perf_counter()
            if batch_idx == WARMUP_STEPS:
                self.start = now
            else:
                self.seconds = now - self.start


def project_trainer(
    device: str, output_dir: str, extra_callbacks: list[L.Callback]
) -> tuple[L.LightningModule, L.Trainer]:
    """The classifier (with the trivial network), callbacks and loggers of the default config."""
    cfg = _config(device, output_dir)
    torch.manual_seed(0)
    model = instantiate(
        cfg.model,
        num_classes=NUM_CLASSES,
        input_size=SIZE,
        optimizer=cfg.optimizer,
        scheduler=cfg.scheduler,
        _recursive_=False,
        _convert_="all",
    )
    model.net = TrivialNet(NUM_CLASSES)
    callbacks = [instantiate(node) for node in cfg.callbacks.values() if node]
    loggers = [instantiate(node) for node in cfg.logger.values() if node]
    trainer = instantiate(
        cfg.trainer,
        callbacks=[*callbacks, *extra_callbacks],
        logger=loggers,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    return model, trainer


def _project_fit(loader: DataLoader, device: str) -> float:
    clock = _StepClock(device, last=len(loader) - 1)
    with tempfile.TemporaryDirectory() as output_dir:
        model, trainer = project_trainer(device, output_dir, [clock])
        trainer.fit(model, train_dataloaders=loader)
    return clock.seconds


def run(device: str, quick: bool) -> dict:
    for name in ("lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    steps = 60 if quick else 200
    loader = _loader(steps)
    # One intra-op thread: the tiny tensors here gain nothing from more, and on a shared CPU
    # every parallel operator waits for its second thread to be scheduled, which cost each
    # operator (metric update, optimiser step) the same few milliseconds and buried the
    # framework's own cost under the machine's load.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = interleaved(
            {
                "bare": partial(_bare_loop, loader, device),
                "project": partial(_project_fit, loader, device),
            },
            repeats=2 if quick else 6,  # even: each variant runs first equally often
        )
    finally:
        torch.set_num_threads(threads)
    timed = steps - 1 - WARMUP_STEPS
    bare_ms, project_ms = (1000 * median(times[k]) / timed for k in ("bare", "project"))
    tax = project_ms - bare_ms
    row = {
        "network": "avgpool + Linear",
        "input_size": SIZE,
        "batch": BATCH,
        "classes": NUM_CLASSES,
        "torch_threads": 1,
        "timed_steps": timed,
        "bare_ms_step": round(bare_ms, 3),
        "project_ms_step": round(project_ms, 3),
        "tax_ms_step": round(tax, 3),
        "bare_runs_ms_step": [round(1000 * t / timed, 2) for t in times["bare"]],
        "project_runs_ms_step": [round(1000 * t / timed, 2) for t in times["project"]],
    }
    return {
        "title": "Per-step framework tax: Trainer.fit + ImageClassifier vs bare loop, trivial net",
        "goal": f"tax <= {GOAL_MS} ms per step",
        "ratio": round(tax, 3),
        "met": tax <= GOAL_MS,
        "rows": [row],
    }
