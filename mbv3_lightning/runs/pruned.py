"""How a run ends when a search's pruner stops it: a normal end, recorded as "pruned"."""

from __future__ import annotations


class RunPruned(Exception):
    """Training stopped because the study's pruner judged the trial not worth finishing."""

    def __init__(self, epoch: int, monitor: str, value: float) -> None:
        self.epoch = epoch  # counted from 0, as the value was reported to Optuna
        self.monitor = monitor
        self.value = value
        super().__init__(
            f"pruned after epoch {epoch + 1}: {monitor} = {value:.4g} is not promising "
            "next to the study's other trials"
        )
