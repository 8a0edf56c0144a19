"""A study several processes share: a fixed budget of trials, each claimed by one process,
held while it runs, and taken up again when its holder is gone.

The budget is ``n_trials`` trials created up front in Optuna's WAITING state. A process claims
one by switching it to RUNNING only if it is still WAITING (Optuna's own queue of enqueued
trials works this way), under the study's lock (``storage.study_lock``), so two processes never
run the same trial and the study never holds more than ``n_trials`` trials, however many
processes join it.

A claimed trial carries its holder (host, process id and start time) and a heartbeat the
holder refreshes. A RUNNING trial whose holder died (``kill -9``, a lost node) is set back to
WAITING, keeping its number and parameters, and the next process that claims it continues in
the trial's folder from its last checkpoint; a trial whose folder already holds its result is
recorded from that result instead of being run again.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from mbv3_lightning.runs.record import RunRecord
from mbv3_lightning.runs.run_dir import RunDir
from mbv3_lightning.sweeps.search.objectives import objective_value
from mbv3_lightning.sweeps.search.storage import StorageSpec, open_storage, study_lock

log = logging.getLogger(__name__)

HOLDER = "mbv3:holder"  # trial system attr: the process running the trial
HEARTBEAT = "mbv3:heartbeat"  # trial system attr: time.time() of its holder's last sign of life
TAKEN_UP = "mbv3:taken_up"  # trial system attr: how often the trial was taken up again
BUDGET = "mbv3:n_trials"  # study system attr: the trials created for the budget so far
SEARCH = "mbv3:search"  # study user attr: objectives, monitor and space (the dashboard shows it)
# Trial user attrs, for people and the report
OVERRIDES = "overrides"
RUN_DIR = "run_dir"
STATUS = "status"
ERROR = "error"

# How long a process that joins a study waits for the process creating it to add its budget.
BUDGET_WAIT_S = 60.0


class StudyMismatchError(ValueError):
    """The command's study differs from the one its storage holds under the same name."""


# --------------------------------------------------------------------------- the holder
def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


@dataclass(frozen=True)
class Holder:
    """The process that runs a trial."""

    host: str
    pid: int
    start: str | None

    @classmethod
    def this_process(cls) -> Holder:
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()))

    def as_attr(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "start": self.start}

    def alive(self) -> bool | None:
        """Whether the process still runs; ``None`` when it ran on another machine."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it exists
        start = _process_start(self.pid)
        return self.start is None or start is None or start == self.start


def abandoned(trial: FrozenTrial, stale_after_s: float, now: float | None = None) -> bool:
    """Whether a RUNNING trial's holder is gone: a dead process on this machine, or no
    heartbeat for ``stale_after_s`` seconds from another machine."""
    raw = trial.system_attrs.get(HOLDER)
    if isinstance(raw, dict):
        holder = Holder(str(raw.get("host")), int(raw.get("pid", -1)), raw.get("start"))
        alive = holder.alive()
        if alive is not None:
            return not alive
    beat = trial.system_attrs.get(HEARTBEAT)
    if beat is None and trial.datetime_start is not None:
        beat = trial.datetime_start.timestamp()
    if beat is None:
        return False
    return (now if now is not None else time.time()) - float(beat) > stale_after_s


# --------------------------------------------------------------------------- the study
def open_study(storage: BaseStorage, name: str, directions: Sequence[str]) -> tuple[int, bool]:
    """The study's id in ``storage``, creating the study if it is new; ``True`` if this
    process created it. A study of that name with other directions is refused."""
    try:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            directions=[StudyDirection[d.upper()] for d in directions],
            load_if_exists=False,
        )
        created = True
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        created = False
    stored = [d.name.lower() for d in study.directions]
    if stored != list(directions):
        raise StudyMismatchError(
            f"Study '{name}' in this storage was created with direction {stored}, not "
            f"{list(directions)}; name a new study (hydra.sweeper.study_name=...) or a new "
            "sweep folder (hydra.sweep.dir=...)."
        )
    return storage.get_study_id_from_name(name), created


def check_same_search(storage: BaseStorage, study_id: int, search: dict[str, Any]) -> None:
    """Record what the study searches, or refuse a command that searches something else:
    its trials would be compared with trials of another experiment."""
    stored = storage.get_study_user_attrs(study_id).get(SEARCH)
    if stored is None:
        storage.set_study_user_attr(study_id, SEARCH, search)
        return
    # JSON round trip, so tuples and lists compare alike
    stored, search = json.loads(json.dumps(stored)), json.loads(json.dumps(search))
    if stored == search:
        return
    differences = []
    for key in sorted(set(stored) | set(search)):
        before, now = stored.get(key), search.get(key)
        if isinstance(before, dict) and isinstance(now, dict):  # the params: name by name
            differences += [
                f"{name}: {before.get(name, 'not searched')} before, "
                f"{now.get(name, 'not searched')} now"
                for name in sorted(set(before) | set(now))
                if before.get(name) != now.get(name)
            ]
        elif before != now:
            differences.append(f"{key}: {before} before, {now} now")
    name = storage.get_study_name_from_id(study_id)
    raise StudyMismatchError(
        f"Study '{name}' searched something else ({'; '.join(differences)}). Rerun it with its "
        "own command, or start a new study (hydra.sweeper.study_name=... or "
        "hydra.sweep.dir=...)."
    )


def ensure_budget(storage: BaseStorage, study_id: int, n_trials: int, *, created: bool) -> int:
    """Create WAITING trials until the study holds ``n_trials``; returns how many it holds.

    The process that created the study adds the budget; one that joins waits for it (another
    machine may be creating it right now) and adds what is missing when ``n_trials`` grew.
    """
    if not created:
        deadline = time.monotonic() + BUDGET_WAIT_S
        while BUDGET not in storage.get_study_system_attrs(study_id):
            if time.monotonic() > deadline:
                break  # its creator died before adding the budget: add it here
            time.sleep(1.0)
    existing = storage.get_n_trials(study_id)
    for _ in range(n_trials - existing):
        storage.create_new_trial(
            study_id, template_trial=optuna.trial.create_trial(state=TrialState.WAITING)
        )
    total = max(existing, n_trials)
    budget = storage.get_study_system_attrs(study_id).get(BUDGET, 0)
    if total > budget:
        storage.set_study_system_attr(study_id, BUDGET, total)
    return total


def join_study(
    spec: StorageSpec,
    lock: Path,
    name: str,
    directions: Sequence[str],
    n_trials: int,
    search: dict[str, Any],
) -> tuple[BaseStorage, int]:
    """Open the storage, create or join the study, check that it searches ``search``, and give
    it its budget of ``n_trials``: all under the study's lock. Optuna creates a new SQLite
    file's tables and stamps their schema version as it opens it, and two processes doing that
    at once collide."""
    with study_lock(lock):
        storage = open_storage(spec)
        study_id, created = open_study(storage, name, directions)
        check_same_search(storage, study_id, search)
        ensure_budget(storage, study_id, n_trials, created=created)
    return storage, study_id


@dataclass(frozen=True)
class Claim:
    """A trial this process now runs; ``taken_up`` when an earlier holder left it unfinished."""

    trial_id: int
    number: int
    taken_up: bool


def take_up_abandoned(storage: BaseStorage, study_id: int, stale_after_s: float) -> list[int]:
    """Set the RUNNING trials whose holder is gone back to WAITING; their numbers.

    Call it under :func:`~mbv3_lightning.sweeps.search.storage.study_lock`: two processes
    deciding at once could otherwise hand one trial back after the other claimed it.
    """
    numbers = []
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        if not abandoned(trial, stale_after_s):
            continue
        try:
            storage.set_trial_state_values(trial._trial_id, state=TrialState.WAITING)
        except UpdateFinishedTrialError:
            continue  # finished meanwhile
        count = int(trial.system_attrs.get(TAKEN_UP, 0)) + 1
        storage.set_trial_system_attr(trial._trial_id, TAKEN_UP, count)
        numbers.append(trial.number)
    return numbers


def claim_trials(
    storage: BaseStorage, study_id: int, n_trials: int, count: int, holder: Holder
) -> list[Claim]:
    """Claim up to ``count`` WAITING trials numbered below ``n_trials``, lowest first (under
    the study's lock: on SQLite the check-and-switch is not atomic by itself).

    The claimed numbers are consecutive: the launcher numbers a batch's jobs from its first
    one, and each job finds its trial (and its folder) by its job number.
    """
    waiting = sorted(
        (
            t
            for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
            if t.number < n_trials
        ),
        key=lambda t: t.number,
    )
    claims: list[Claim] = []
    for trial in waiting:
        if len(claims) == count:
            break
        if claims and trial.number != claims[-1].number + 1:
            break
        try:
            won = storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING)
        except UpdateFinishedTrialError:
            won = False
        if not won:
            if claims:
                break
            continue  # another process was faster: try the next one
        storage.set_trial_system_attr(trial._trial_id, HOLDER, holder.as_attr())
        storage.set_trial_system_attr(trial._trial_id, HEARTBEAT, time.time())
        claims.append(Claim(trial._trial_id, trial.number, HOLDER in trial.system_attrs))
    return claims


def give_back(storage: BaseStorage, claims: Iterable[Claim]) -> None:
    """Set this process's unfinished trials back to WAITING (it is stopping: Ctrl-C)."""
    for claim in claims:
        try:
            if storage.get_trial(claim.trial_id).state == TrialState.RUNNING:
                storage.set_trial_state_values(claim.trial_id, state=TrialState.WAITING)
        except Exception as err:  # stopping anyway: the holder check takes it up later
            log.warning("Could not give trial %d back (%s).", claim.number, err)


class Heartbeat:
    """A thread that refreshes the heartbeat of the trials this process holds."""

    def __init__(self, storage: BaseStorage, interval_s: float) -> None:
        self._storage = storage
        self._interval = interval_s
        self._held: dict[int, int] = {}  # trial id -> number
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="study-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def hold(self, claims: Iterable[Claim]) -> None:
        with self._lock:
            self._held.update({c.trial_id: c.number for c in claims})

    def release(self, claims: Iterable[Claim]) -> None:
        with self._lock:
            for claim in claims:
                self._held.pop(claim.trial_id, None)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                held = list(self._held)
            for trial_id in held:
                try:
                    self._storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
                except UpdateFinishedTrialError:
                    pass  # told meanwhile
                except Exception as err:  # a busy database must not end the study
                    log.warning("Heartbeat of trial id %d failed: %s", trial_id, err)


def trial_command(trial: FrozenTrial) -> str:
    """The command that trains this trial alone: its overrides, without the sweep's own."""
    overrides = trial.user_attrs.get(OVERRIDES)
    if not overrides:  # a trial recorded before its overrides were (or by another tool)
        from mbv3_lightning.sweeps.search.space import override_value

        overrides = [f"{k}={override_value(v)}" for k, v in trial.params.items()]
    kept = [o for o in overrides if not o.lstrip("+~").startswith("sweep.")]
    return "mbv3 train " + " ".join(kept)


# --------------------------------------------------------------------------- outcomes
@dataclass(frozen=True)
class Outcome:
    """How a trial ended, as its folder records it, in Optuna's terms."""

    state: TrialState
    status: str  # the cell's status.json word: completed, skipped, pruned, failed, ...
    values: list[float] | None = None
    error: str | None = None


def read_outcome(run_dir: Path | None, objectives: Sequence[str]) -> Outcome | None:
    """The trial's result from its folder (``status.json``, ``metrics.json``); ``None`` while
    the folder records no end (never started, running, or killed)."""
    if run_dir is None:
        return None
    try:
        status = json.loads(RunDir(run_dir).status_json.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    word = str(status.get("status"))
    if word == "pruned":
        return Outcome(TrialState.PRUNED, word)
    if word == "failed":
        return Outcome(TrialState.FAIL, word, error=status.get("error"))
    if word not in ("completed", "skipped"):
        return None
    record = RunRecord.read_if_finished(run_dir)
    if record is None:
        return Outcome(TrialState.FAIL, "failed", error=f"{run_dir} holds no metrics.json")
    values = [objective_value(record, name) for name in objectives]
    missing = [name for name, v in zip(objectives, values, strict=True) if v is None]
    if missing:
        hint = (
            " (measured on test images: keep test=true)"
            if any(m.startswith("test") for m in missing)
            else ""
        )
        return Outcome(
            TrialState.FAIL, "failed", error=f"the run recorded no {', '.join(missing)}{hint}"
        )
    return Outcome(TrialState.COMPLETE, word, values=[float(v) for v in values if v is not None])
