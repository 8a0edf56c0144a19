"""The job side of a trial: find its study and report to it, for the pruner.

A trial's job knows which study it belongs to from its own Hydra config (``hydra.sweeper``:
storage, study name, pruner, monitor) and which trial it is from its job number, which the
search sets to the trial number.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from omegaconf import DictConfig, ListConfig
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from mbv3_lightning.sweeps.search import SWEEPER_TARGET
from mbv3_lightning.sweeps.search.builders import build
from mbv3_lightning.sweeps.search.storage import open_storage, storage_spec


class TrialReporter:
    """Reports a trial's per-epoch value to its study and asks the study's pruner."""

    def __init__(
        self, storage: BaseStorage, study: optuna.Study, trial_id: int, monitor: str
    ) -> None:
        self._storage = storage
        self.study = study
        self.trial_id = trial_id
        self.monitor = monitor

    def report(self, value: float, epoch: int) -> bool:
        """Record ``value`` at step ``epoch``; True when the pruner stops the trial. An epoch
        already reported (a trial resumed from its checkpoint) keeps its first value."""
        trial = self._storage.get_trial(self.trial_id)
        if epoch not in trial.intermediate_values:
            self._storage.set_trial_intermediate_value(self.trial_id, epoch, value)
            trial = self._storage.get_trial(self.trial_id)
        return bool(self.study.pruner.prune(self.study, trial))


def trial_reporter(hydra_cfg: DictConfig) -> TrialReporter | None:
    """The reporter of the trial this job runs; ``None`` when the job is no trial of this
    project's Optuna sweeper, or its study does not prune (several objectives, NopPruner)."""
    sweeper = hydra_cfg.get("sweeper")
    if not isinstance(sweeper, DictConfig) or sweeper.get("_target_") != SWEEPER_TARGET:
        return None
    direction = sweeper.get("direction")
    if isinstance(direction, ListConfig):
        direction = list(direction)
    if isinstance(direction, list) and len(direction) > 1:
        return None  # Optuna prunes single-objective studies only
    pruner = build(sweeper.get("pruner"), "hydra.sweeper.pruner")
    if pruner is None or isinstance(pruner, optuna.pruners.NopPruner):
        return None
    spec = storage_spec(sweeper.get("storage"), Path(hydra_cfg.sweep.dir))
    # The sweeper created the study: a job that finds no storage (another working directory
    # on a cluster node) fails with its path instead of starting an empty study of its own.
    storage = open_storage(spec, create=False)
    study = optuna.load_study(study_name=str(sweeper.study_name), storage=storage, pruner=pruner)
    number = int(hydra_cfg.job.num)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(str(sweeper.study_name)), number
    )
    state = storage.get_trial(trial_id).state
    if state != TrialState.RUNNING:
        raise RuntimeError(
            f"Trial {number} of study '{sweeper.study_name}' is {state.name}, not RUNNING: this "
            "job was not started by the study's sweeper."
        )
    return TrialReporter(storage, study, trial_id, str(sweeper.monitor))
