"""NonFiniteLossGuard: stops on the first NaN/inf training loss, checked every step on the CPU
and in groups of steps (no host-device sync per step) elsewhere, never after a bad step's
weights reached a checkpoint."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.step_tax import TrivialNet
from mbv3_lightning.training.callbacks import NonFiniteLossError, NonFiniteLossGuard
from mbv3_lightning.training.module import ImageClassifier

BATCH = 4
CLASSES = 3


class _LastBatch(L.Callback):
    """The index of the last training batch that ran."""

    def __init__(self) -> None:
        self.index = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.index = batch_idx


def _fit(nan_batch: int, guard: NonFiniteLossGuard, *callbacks: L.Callback) -> _LastBatch:
    """One epoch of 12 batches whose batch ``nan_batch`` holds a NaN image."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(12 * BATCH, 3, 8, 8, generator=generator)
    images[nan_batch * BATCH] = float("nan")
    labels = torch.randint(0, CLASSES, (12 * BATCH,), generator=generator)
    model = ImageClassifier(
        {"arch": "mobilenet_v3_small"},
        CLASSES,
        input_size=32,
        optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3},
        scheduler=None,
    )
    model.net = TrivialNet(CLASSES)
    last = _LastBatch()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[last, guard, *callbacks],  # last first: it sees the batch that raises
    )
    with pytest.raises(NonFiniteLossError, match=rf"became nan at epoch 1, batch {nan_batch + 1} "):
        trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=BATCH))
    return last


def test_on_the_cpu_every_step_is_checked():
    assert _fit(2, NonFiniteLossGuard()).index == 2


def test_grouped_checks_name_the_first_bad_batch_at_the_end_of_the_group():
    # checked after batches 3, 7, 11: a NaN at batch 5 stops the run after batch 7
    assert _fit(5, NonFiniteLossGuard(check_every_n_steps=4)).index == 7


def test_the_end_of_the_epoch_checks_what_is_left():
    assert _fit(10, NonFiniteLossGuard(check_every_n_steps=50)).index == 11


def test_no_checkpoint_is_written_after_a_bad_step(tmp_path: Path):
    every_3 = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=-1)
    _fit(4, NonFiniteLossGuard(check_every_n_steps=50), every_3)
    # the save after step 3 (batches 0-2) is fine; the one after step 6 met the NaN of batch 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch=0-step=3.ckpt"]


def test_check_every_n_steps_must_be_positive():
    with pytest.raises(ValueError, match="check_every_n_steps must be >= 1"):
        NonFiniteLossGuard(check_every_n_steps=0)
