"""Stop a search trial early when its study's pruner says so.

Wired only when the run is a trial of ``hydra/sweeper=optuna`` (``cli/train.py``). After
every validation the trial reports its monitored metric (``val/acc``) with the epoch as the
step (counted from 0, as Optuna's pruners expect) and raises
:class:`~mbv3_lightning.runs.pruned.RunPruned` when the pruner answers "stop"; the sweep cell
records it as "pruned", not "failed".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import Callback

from mbv3_lightning.runs.pruned import RunPruned

log = logging.getLogger(__name__)

# (value, epoch) -> True when the pruner stops the trial
Report = Callable[[float, int], bool]


class TrialPruning(Callback):
    """Report ``monitor`` after each validation; stop training when ``report`` says so."""

    def __init__(self, report: Report, monitor: str) -> None:
        self.report = report
        self.monitor = monitor
        self._warned = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            if not self._warned:
                known = ", ".join(sorted(trainer.callback_metrics))
                log.warning(
                    "Pruning is off for this trial: it logs no '%s' (hydra.sweeper.monitor); "
                    "logged: %s.",
                    self.monitor,
                    known,
                )
                self._warned = True
            return
        score = float(value)
        epoch = trainer.current_epoch
        # One process asks the study (DDP ranks share the decision, so all stop together).
        stop = trainer.is_global_zero and math.isfinite(score) and self.report(score, epoch)
        if trainer.strategy.broadcast(bool(stop), src=0):
            raise RunPruned(epoch, self.monitor, score)
