"""A test-only callback that holds a training process still at a known point, so a test can
signal or kill it there instead of guessing with a sleep how far a run has got."""

from __future__ import annotations

import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback


def _signalled(trainer) -> bool:
    """A preemption signal arrived (the project's PreemptionCheckpoint has recorded it)."""
    return any(getattr(callback, "received", None) for callback in trainer.callbacks)


class PauseOnce(Callback):
    """At batch `batch` of epoch `epoch`, write `marker` and wait, until a preemption signal
    arrives (then the batch runs and the run stops after it) or `seconds` pass; never again
    once `marker` exists (the resumed process runs with the same overrides and must not pause)."""

    def __init__(self, epoch: int, batch: int, marker: str, seconds: float = 600.0) -> None:
        self.epoch, self.batch, self.marker, self.seconds = epoch, batch, Path(marker), seconds

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        here = trainer.current_epoch == self.epoch and batch_idx == self.batch
        if here and not self.marker.exists():
            self.marker.write_text(f"epoch {self.epoch} batch {self.batch}\n")
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline and not _signalled(trainer):
                time.sleep(0.02)
