"""Preemption is a normal way for a run to stop: on SIGTERM (what SLURM's preemption,
``scancel`` and time limits send) the run finishes its current batch, saves ``last.ckpt`` at
that step, and stops with :class:`RunInterrupted`, so the command exits non-zero and says how
to resume.

Under submitit (``hydra/launcher=slurm``) the launcher's own preemption signal is handled the
same way, and once the checkpoint is saved submitit's handler requeues the job, which resumes
the interrupted cell by itself.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from mbv3_lightning.runs.status import RunInterrupted

log = logging.getLogger(__name__)

# submitit's preemption signal (its SUBMITIT_PREEMPT_SIGNAL, USR2 unless set otherwise).
SUBMITIT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"


def _under_submitit() -> bool:
    return "SUBMITIT_EXECUTOR" in os.environ or "SUBMITIT_FOLDER" in os.environ


def preemption_signals(names: Sequence[str]) -> list[signal.Signals]:
    """The configured signals, plus submitit's own when running as a submitit job."""
    wanted = list(names)
    if _under_submitit():
        wanted.append("SIG" + os.environ.get(SUBMITIT_SIGNAL_ENV, "USR2").removeprefix("SIG"))
    found = []
    for name in dict.fromkeys(wanted):
        sig = getattr(signal, name, None)
        if not isinstance(sig, signal.Signals):
            raise ValueError(f"callbacks.preemption.signals: {name!r} is no signal of this OS.")
        found.append(sig)
    return found


class PreemptionCheckpoint(Callback):
    """Turns the preemption signals into a checkpoint at the current step and a
    :class:`RunInterrupted`, raised at the next batch boundary (never inside a step).

    ``last.ckpt`` saved here resumes exactly: the train loader of this project records how
    far into the epoch it was (``data/resumable_loader.py``) and the classifier keeps the
    epoch's outputs so far.
    """

    def __init__(self, dirpath: str, signals: Sequence[str] = ("SIGTERM", "SIGUSR1")) -> None:
        self.dirpath = Path(dirpath)
        self.signal_names = tuple(signals)
        self.received: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            log.warning("Received %s: stopping after the current batch.", name)
            self.received = name

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set in the main thread
        for sig in preemption_signals(self.signal_names):
            self._previous[sig] = signal.signal(sig, self._handle)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _requeue(self) -> Callable[[], None] | None:
        """submitit's handler for the signal received, to call once the run is recorded."""
        if self.received is None:
            return None
        sig = signal.Signals[self.received]
        previous = self._previous.get(sig)
        if not callable(previous) or not _under_submitit():
            return None
        return lambda: previous(sig.value, None)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.received is None:
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        raise RunInterrupted(
            self.received,
            path,
            f"at epoch {trainer.current_epoch + 1}, batch {batch_idx + 1}",
            self._requeue(),
        )

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        # Mid-validation is no point to resume from: the epoch's last.ckpt (if any) stays it.
        if self.received is not None and not trainer.sanity_checking:
            last = self.dirpath / "last.ckpt"
            raise RunInterrupted(
                self.received,
                last if last.is_file() else None,
                f"while validating epoch {trainer.current_epoch + 1}",
                self._requeue(),
            )
