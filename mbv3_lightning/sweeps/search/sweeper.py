"""The search loop behind ``hydra/sweeper=optuna``: claim trials, launch them, record them.

Each round this process claims up to ``n_jobs`` trials of the study's budget (consecutive
numbers), samples their parameters, and launches them through Hydra's launcher (in-process,
joblib or SLURM) as one batch whose job numbers are the trial numbers, so trial 7 runs in
``<sweep dir>/7``. When the batch returns, each trial's folder says how it ended
(``status.json``; the objectives from ``metrics.json``) and the study is told so. The loop
ends when no trial is left to claim; other processes may still be running theirs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, configure_log
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from mbv3_lightning.extras import MissingExtraError, require_extra
from mbv3_lightning.runs.run_dir import write_atomic, write_json_atomic
from mbv3_lightning.sweeps.search import SEARCH_FILE
from mbv3_lightning.sweeps.search.builders import (
    BuildError,
    build,
    plain_mapping,
    target_class,
    trial_seed,
)
from mbv3_lightning.sweeps.search.objectives import (
    PTE_OBJECTIVE,
    ObjectiveError,
    check_objectives,
    label,
)
from mbv3_lightning.sweeps.search.space import SearchSpace, SearchSpaceError, parse_search_space
from mbv3_lightning.sweeps.search.storage import (
    StorageError,
    StorageSpec,
    lock_path,
    storage_spec,
    study_lock,
)
from mbv3_lightning.sweeps.search.study import (
    ERROR,
    OVERRIDES,
    RUN_DIR,
    STATUS,
    Claim,
    Heartbeat,
    Holder,
    Outcome,
    StudyMismatchError,
    claim_trials,
    give_back,
    join_study,
    read_outcome,
    take_up_abandoned,
    trial_command,
)

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"  # the best trial(s), as the Hydra plugin wrote it
_USER_ERRORS = (
    SearchSpaceError,
    BuildError,
    ObjectiveError,
    StorageError,
    StudyMismatchError,
)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, ListConfig | list | tuple):
        return list(value)
    return [value]


class OptunaSearch:
    """An Optuna study run as a Hydra multirun (the settings are ``hydra.sweeper``'s keys,
    see ``conf/hydra/sweeper/optuna.yaml``)."""

    def __init__(
        self,
        *,
        sampler: DictConfig | None,
        pruner: DictConfig | None,
        direction: str | Sequence[str],
        objective: str | Sequence[str],
        monitor: str,
        storage: str | None,
        study_name: str,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
        stale_after_s: float,
        heartbeat_s: float,
        sweep_dir: str,
    ) -> None:
        # `sweep_dir` is read by conf/hydra/default.yaml (hydra.sweep.dir); the folder this
        # search uses is hydra.sweep.dir, which the command line may also set.
        del sweep_dir
        self.directions = [str(d) for d in _as_list(direction)]
        self.objectives = [str(o) for o in _as_list(objective)]
        self.sampler_cfg = sampler
        self.pruner_cfg = pruner
        self.monitor = monitor
        self.storage_setting = storage
        self.study_name = str(study_name)
        self.n_trials = int(n_trials)
        # n_jobs <= 0 is joblib's "one per CPU core"
        self.n_jobs = int(n_jobs) if int(n_jobs) > 0 else max(1, os.cpu_count() or 1)
        self.params = params
        self.stale_after_s = float(stale_after_s)
        self.heartbeat_s = float(heartbeat_s)

    # ------------------------------------------------------------------ Hydra's Sweeper API
    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)
        sweep = OmegaConf.to_container(config.hydra.sweep, resolve=False)  # the templates
        subdir = sweep.get("subdir") if isinstance(sweep, dict) else None
        # Where a trial's folder is before its job has run (to find the result of a trial
        # whose holder died after it finished); only known for Hydra's default layout.
        self._numbered_folders = subdir == "${hydra.job.num}"

    def sweep(self, arguments: list[str]) -> None:
        try:
            self._sweep(arguments)
        except (*_USER_ERRORS, MissingExtraError) as err:
            raise SystemExit(str(err)) from None

    # ------------------------------------------------------------------ the study
    def _sweep(self, arguments: list[str]) -> None:
        check_objectives(self.objectives, self.directions)
        if PTE_OBJECTIVE in self.objectives:
            # else every trial would train, then fail for want of its objective
            if not self.config.get("test", True):
                raise ObjectiveError(
                    f"hydra.sweeper.objective: {PTE_OBJECTIVE} times the best checkpoint on a "
                    "test image after the test; the trials need test=true."
                )
            require_extra("mobile", f"hydra.sweeper.objective={PTE_OBJECTIVE}", ("executorch",))
        space = parse_search_space(plain_mapping(self.params) if self.params else None, arguments)
        if not space.distributions:
            raise SearchSpaceError(
                "hydra.sweeper.params holds no search space: give at least one key an "
                "interval(...), choice(...), range(...) or a list of values."
            )
        n_trials = self.n_trials
        if self._is_grid():
            size = math.prod(len(v) for v in space.grid().values())
            n_trials = min(n_trials, size)
        pruner = build(self.pruner_cfg, "hydra.sweeper.pruner")  # a typo fails here, not later
        self._sampler_for(0, space)
        prunes = pruner is not None and not isinstance(pruner, optuna.pruners.NopPruner)
        if len(self.directions) > 1 and prunes:
            log.warning(
                "Pruning is off: Optuna prunes single-objective studies only "
                "(hydra/sweeper/pruner=none silences this)."
            )

        spec = storage_spec(self.storage_setting, self.sweep_dir)
        lock = lock_path(spec, self.sweep_dir)
        with study_lock(lock):
            self._check_sweep_folder(spec)
        storage, study_id = join_study(
            spec, lock, self.study_name, self.directions, n_trials, self._search_record(space)
        )
        done = storage.get_n_trials(study_id, state=_FINISHED)
        log.info(
            "Study '%s' (%s): %d of %d trials finished%s",
            self.study_name,
            spec.display,
            done,
            n_trials,
            "." if done >= n_trials else "; this process runs trials nobody else holds.",
        )
        holder = Holder.this_process()
        held: list[Claim] = []
        with Heartbeat(storage, self.heartbeat_s) as heartbeat:
            try:
                while True:
                    with study_lock(lock):
                        for number in take_up_abandoned(storage, study_id, self.stale_after_s):
                            log.info("Trial %d lost its process; taking it up again.", number)
                        held = claim_trials(storage, study_id, n_trials, self.n_jobs, holder)
                    if not held:
                        break
                    heartbeat.hold(held)
                    self._run_batch(storage, held, space)
                    heartbeat.release(held)
                    held = []
            except BaseException:
                give_back(storage, held)  # Ctrl-C: the next run or another process takes them
                raise
        self._finish(storage, spec, n_trials)

    def _is_grid(self) -> bool:
        node = OmegaConf.to_container(self.sampler_cfg, resolve=True) if self.sampler_cfg else {}
        return isinstance(node, dict) and node.get("_target_") == "optuna.samplers.GridSampler"

    def _sampler_for(self, number: int, space: SearchSpace) -> optuna.samplers.BaseSampler:
        """The sampler that proposes trial ``number``: seeded per trial (builders.trial_seed)."""
        node = plain_mapping(self.sampler_cfg) if self.sampler_cfg else None
        if node is None:
            return optuna.samplers.TPESampler(seed=None)
        extra: dict[str, Any] = {}
        cls = target_class(node, "hydra.sweeper.sampler")
        if node.get("seed") is not None and cls in _SEEDED_PER_TRIAL:
            extra["seed"] = trial_seed(node["seed"], number)
        if cls is optuna.samplers.GridSampler:
            extra["search_space"] = space.grid()
        return build(node, "hydra.sweeper.sampler", **extra)

    def _search_record(self, space: SearchSpace) -> dict[str, Any]:
        return {
            "objectives": self.objectives,
            "monitor": self.monitor,
            **space.describe(),
        }

    def _check_sweep_folder(self, spec: StorageSpec) -> None:
        """One study per sweep folder: trial folders are named by trial number only."""
        import json

        path = self.sweep_dir / SEARCH_FILE
        if path.is_file():
            before = json.loads(path.read_text())
            if before.get("study_name") != self.study_name:
                raise StudyMismatchError(
                    f"'{self.sweep_dir}' holds the trials of study '{before.get('study_name')}', "
                    f"not '{self.study_name}'; give this study its own folder "
                    f"(hydra.sweep.dir=...)."
                )
        local = spec.kind in ("sqlite", "journal")
        write_json_atomic(
            path,
            {
                "study_name": self.study_name,
                # a local storage by its file name (the folder may move); a URL without password
                "storage": {
                    "kind": spec.kind,
                    "location": Path(spec.location).name if local else spec.display,
                },
                "objectives": self.objectives,
                "directions": self.directions,
                "monitor": self.monitor,
                "n_trials": self.n_trials,
            },
        )

    # ------------------------------------------------------------------ one batch
    def _run_batch(self, storage: BaseStorage, claims: list[Claim], space: SearchSpace) -> None:
        launch: list[tuple[Claim, list[str]]] = []
        for claim in claims:
            study = optuna.load_study(
                study_name=self.study_name,
                storage=storage,
                sampler=self._sampler_for(claim.number, space),
            )
            # Reading the trials syncs the study's storage cache with the claimed one (as ask()
            # does); then the claimed trial is a Trial like the one `study.ask()` returns (ask()
            # itself would create a trial beyond the budget when none is waiting).
            study.get_trials(deepcopy=False)
            trial = optuna.trial.Trial(study, claim.trial_id)
            overrides = space.overrides(space.suggest(trial))
            if claim.taken_up:
                outcome = read_outcome(self._folder(claim.number), self.objectives)
                if outcome is not None:  # it ended before its holder died: record, not rerun
                    self._record(storage, claim, outcome, self._folder(claim.number))
                    continue
                overrides.append("sweep.resume=true")  # continue from its last.ckpt
            storage.set_trial_user_attr(claim.trial_id, OVERRIDES, overrides)
            launch.append((claim, overrides))
        for run in _consecutive(launch):
            returns: Sequence[JobReturn] | None = None
            error: Exception | None = None
            try:
                returns = self.launcher.launch(
                    [o for _, o in run], initial_job_idx=run[0][0].number
                )
            except Exception as err:  # e.g. a joblib worker killed by the OOM killer
                error = err
                log.error("Launching trials %s failed: %s", [c.number for c, _ in run], err)
            finally:
                # The in-process launcher leaves the last job's logging set up; the study's
                # own lines go to Hydra's console again.
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
            for i, (claim, _) in enumerate(run):
                folder = _job_folder(returns[i]) if returns else None
                folder = folder or self._folder(claim.number)
                outcome = read_outcome(folder, self.objectives) or Outcome(
                    TrialState.FAIL,
                    "failed",
                    error=f"the job ended without recording a result ({error or 'no status'})",
                )
                self._record(storage, claim, outcome, folder)

    def _folder(self, number: int) -> Path | None:
        return self.sweep_dir / str(number) if self._numbered_folders else None

    def _record(
        self, storage: BaseStorage, claim: Claim, outcome: Outcome, folder: Path | None
    ) -> None:
        """Tell the study how the trial ended, with its folder and status for the report."""
        if folder is not None:
            try:
                where = str(folder.resolve().relative_to(self.sweep_dir.resolve()))
            except ValueError:
                where = str(folder)
            storage.set_trial_user_attr(claim.trial_id, RUN_DIR, where)
        storage.set_trial_user_attr(claim.trial_id, STATUS, outcome.status)
        if outcome.error:
            storage.set_trial_user_attr(claim.trial_id, ERROR, outcome.error)
        study = optuna.load_study(study_name=self.study_name, storage=storage)
        study.tell(claim.number, outcome.values, state=outcome.state, skip_if_finished=True)
        # Optuna logs a trial's end only inside study.optimize(): one line per trial here.
        if outcome.state == TrialState.COMPLETE and outcome.values is not None:
            scores = ", ".join(
                f"{name} {value:.4g}"
                for name, value in zip(self.objectives, outcome.values, strict=True)
            )
            log.info("Trial %d complete: %s (%s).", claim.number, scores, folder)
        elif outcome.state == TrialState.PRUNED:
            log.info("Trial %d pruned (%s).", claim.number, folder)
        else:
            log.warning("Trial %d failed: %s (%s).", claim.number, outcome.error, folder)

    # ------------------------------------------------------------------ the end
    def _finish(self, storage: BaseStorage, spec: StorageSpec, n_trials: int) -> None:
        """Write the best trial(s) and print the study's state in one paragraph."""
        study = optuna.load_study(study_name=self.study_name, storage=storage)
        trials = [t for t in study.get_trials(deepcopy=False) if t.number < n_trials]
        counts = {s: sum(t.state == s for t in trials) for s in TrialState}
        log.info(
            "Study '%s': %d complete, %d pruned, %d failed, %d running elsewhere, of %d trials.",
            self.study_name,
            counts[TrialState.COMPLETE],
            counts[TrialState.PRUNED],
            counts[TrialState.FAIL],
            counts[TrialState.RUNNING] + counts[TrialState.WAITING],
            n_trials,
        )
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": self.study_name,
            "storage": spec.display,
            "objectives": self.objectives,
            "directions": self.directions,
        }
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete and len(self.directions) == 1:
            best = study.best_trial
            results.update(best_trial=best.number, best_params=best.params, best_value=best.value)
            log.info(
                "Best %s: %.4f (trial %d): %s",
                self.objectives[0],
                best.value,
                best.number,
                trial_command(best),
            )
        elif complete:
            front = study.best_trials
            results["solutions"] = [
                {"trial": t.number, "params": t.params, "values": t.values} for t in front
            ]
            log.info(
                "Pareto front of %s: %d trials.",
                " x ".join(map(label, self.objectives)),
                len(front),
            )
            for t in front:
                values = ", ".join(f"{v:.4g}" for v in t.values)
                log.info("  trial %d (%s): %s", t.number, values, trial_command(t))
        write_atomic(self.sweep_dir / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(results)))
        log.info("Report: mbv3 report %s", self.sweep_dir)


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# Samplers whose seed only drives their random draws, so each trial may get its own. The grid
# and QMC samplers derive the whole sequence of points from their seed: they keep the study's.
_SEEDED_PER_TRIAL = (
    optuna.samplers.TPESampler,
    optuna.samplers.RandomSampler,
    optuna.samplers.NSGAIISampler,
    optuna.samplers.NSGAIIISampler,
)


def _job_folder(ret: JobReturn) -> Path | None:
    if ret.hydra_cfg is None:
        return None  # no Hydra config came back (a launcher that lost the job)
    try:
        return Path(ret.hydra_cfg.hydra.runtime.output_dir)
    except Exception:  # no Hydra config came back (a launcher that lost the job)
        return None


def _consecutive(
    items: list[tuple[Claim, list[str]]],
) -> list[list[tuple[Claim, list[str]]]]:
    """Split into runs of consecutive trial numbers (one launcher batch each)."""
    runs: list[list[tuple[Claim, list[str]]]] = []
    for item in items:
        if runs and item[0].number == runs[-1][-1][0].number + 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs
