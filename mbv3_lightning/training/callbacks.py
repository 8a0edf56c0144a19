"""Lightning callbacks that keep long sweeps honest: stop on a non-finite loss, resume exactly."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from mbv3_lightning.data.random_state import capture_rng, restore_rng


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; continuing would only waste the job's time."""


class NonFiniteLossGuard(Callback):
    """Stop the job with a clear message when the training loss is NaN or infinite.

    ``Trainer(detect_anomaly=True)`` only reports NaNs met in the backward pass and is slow;
    a loss that overflows to inf, or a NaN from the data, would train on silently. Checking
    the loss itself is cheap and catches both.

    Reading a loss on the host waits for its step to finish: free on the CPU, a stall of the
    GPU's queue every step on an accelerator. So the losses are kept (device scalars, no work
    per step) and checked together every ``check_every_n_steps`` steps, at the end of each
    epoch and before any checkpoint is written (so none holds weights trained past a bad
    loss); the error names the first bad batch all the same. ``None``: every step on the CPU,
    every 50 steps elsewhere.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        if check_every_n_steps is not None and check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps must be >= 1, got {check_every_n_steps}.")
        self.check_every_n_steps = check_every_n_steps
        # (epoch, batch index, global step, loss) of the steps not checked yet
        self._pending: list[tuple[int, int, int, torch.Tensor]] = []

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        every = self.check_every_n_steps or (1 if loss.device.type == "cpu" else 50)
        if every == 1 and bool(torch.isfinite(loss).all()):
            return  # checked at once, nothing kept: the per-step cost of the check alone
        self._pending.append((trainer.current_epoch, batch_idx, trainer.global_step, loss.detach()))
        if len(self._pending) >= every:
            self._check(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        losses = torch.stack([loss.float().reshape(-1)[0] for *_, loss in pending]).cpu()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad) == 0:
            return
        first = int(bad[0])
        epoch, batch_idx, step, _ = pending[first]
        lrs = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        raise NonFiniteLossError(
            f"Training loss became {losses[first].item()} at epoch {epoch + 1}, "
            f"batch {batch_idx + 1} "
            f"(global step {step}; learning rate now {lrs}). The job was stopped. Usual "
            "fixes: a lower `optimizer.lr`, gradient clipping "
            "(`+trainer.gradient_clip_val=1.0`), `trainer.precision=32-true` instead of a "
            "16-bit precision, or checking the data for corrupt images."
        )


class RngStateCheckpoint(Callback):
    """Save the Python, NumPy and torch random states in every checkpoint and restore them.

    Lightning restores weights, optimiser and loop counters but not the random generators
    that shuffle batches and draw augmentations, so a run resumed from ``last.ckpt`` would
    see different batches than an uninterrupted one. With this, a resumed deterministic run
    reproduces the uninterrupted run's metrics exactly.
    """

    def state_dict(self) -> dict[str, Any]:
        return capture_rng()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restore_rng(state_dict)


class LastCheckpoint(ModelCheckpoint):
    """``<dirpath>/last.ckpt`` after every epoch and, optionally, every N training steps.

    A ModelCheckpoint without a monitor keeps the newest checkpoint under one fixed name;
    Lightning writes it through a temporary file, so a kill never leaves half a file. The
    step interval lets a job with hour-long epochs resume close to where it stopped.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int | None = None) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,
            save_last=False,
            enable_version_counter=False,
            every_n_epochs=1,
        )
        if every_n_train_steps is not None and every_n_train_steps < 1:
            raise ValueError(
                "callbacks.last_checkpoint.every_n_train_steps must be >= 1 or null, "
                f"not {every_n_train_steps}."
            )
        self.step_interval = every_n_train_steps

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not self.step_interval or trainer.global_step % self.step_interval:
            return
        if self._should_skip_saving_checkpoint(trainer):
            return
        self._save_none_monitor_checkpoint(trainer, self._monitor_candidates(trainer))


class TrainTime(Callback):
    """Training time summed over the attempts of a resumed run.

    Every checkpoint records the seconds trained so far; a run resumed from it starts counting
    from there (``before``), so a preempted and resumed run reports its whole training time.
    Time spent after an attempt's last checkpoint (lost to a ``kill -9``) is not counted.
    """

    def __init__(self) -> None:
        self.before = 0.0
        self._started: float | None = None

    @property
    def state_key(self) -> str:
        return "TrainTime"

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._started = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return {"seconds": self.before + running}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict["seconds"])
