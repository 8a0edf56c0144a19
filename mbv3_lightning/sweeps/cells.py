"""Fault-tolerant, resumable multiruns: a ``status.json`` per cell and a ``sweep.json`` per sweep.

A *cell* is one job of a Hydra multirun (one directory under the sweep directory). Each cell
records its own state (running, completed, skipped, failed, with timings and, on failure, a
``traceback.txt``), so a sweep can be inspected while it runs and resumed after a crash or a
``kill -9``: with ``sweep.resume=true`` a cell whose ``metrics.json`` exists is skipped, a cell
with ``checkpoints/last.ckpt`` continues from it, and any other cell (failed or never started)
runs from scratch. :class:`SweepTracker` (a Hydra callback) writes ``sweep.json`` (the grid
and every cell's state) and makes the multirun exit non-zero, naming the failed cells.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mbv3_lightning.runs.lock import RunLockedError, exclusive_update, lock_holder, run_lock
from mbv3_lightning.runs.pruned import RunPruned
from mbv3_lightning.runs.resume import plan_resume
from mbv3_lightning.runs.run_dir import RunDir, write_atomic, write_json_atomic
from mbv3_lightning.runs.status import RunInterrupted, RunStatus, now_iso, read_status
from mbv3_lightning.sweeps import progress

log = logging.getLogger(__name__)

STATUS_FILE = RunDir(Path()).status_json.name
TRACEBACK_FILE = RunDir(Path()).traceback_txt.name
SWEEP_FILE = "sweep.json"  # in the sweep directory, above the cells' run directories

T = TypeVar("T")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # absent, or cut short by a kill: treated as "no record"


def run_cell(
    run_dir: Path,
    *,
    job_num: int,
    overrides: list[str],
    resume: bool,
    train: Callable[[RunStatus], T],
    sweep_dir: Path | None = None,
    total: int | None = None,
) -> T | None:
    """Run one multirun cell, recording it in ``status.json``.

    It prints a line when it starts and one when it ends (:mod:`mbv3_lightning.sweeps.progress`;
    ``total``: the sweep's number of cells, for ``cell 2/4``).

    The cell is locked for its whole run: a cell another process holds (two
    ``sweep.resume=true`` processes on one sweep) is left to it untouched, and this process
    goes on with the next one. A failure is logged, written to ``traceback.txt`` and
    ``status.json``, and swallowed (returns ``None``) so the remaining cells run on;
    :class:`SweepTracker` reports it at the end. An interruption (a signal) is recorded in the
    cell and in ``sweep.json`` and stops the sweep. A search trial stopped by its study's pruner
    is recorded as "pruned" (``pruned_epoch`` counted from 1) and returns ``None`` too.
    """
    try:
        with run_lock(run_dir):
            cell = _Cell(run_dir, job_num, overrides, sweep_dir, total)
            return _run_locked_cell(cell, resume, train)
    except RunLockedError as held:
        _drop_file_logs_into(run_dir)  # this process writes nothing into the other's cell
        holder = held.holder
        log.warning(
            "Cell %d (%s) is being run by pid %s on %s; leaving it to that process.",
            job_num,
            " ".join(overrides),
            holder.get("pid", "?"),
            holder.get("host", "?"),
        )
        return None


def _drop_file_logs_into(run_dir: Path) -> None:
    """Detach the log files Hydra opened for this job inside ``run_dir``."""
    root = logging.getLogger()
    inside = Path(run_dir).resolve()
    for handler in list(root.handlers):
        filename = getattr(handler, "baseFilename", None)
        if filename and inside in Path(filename).resolve().parents:
            root.removeHandler(handler)
            handler.close()


@dataclass(frozen=True)
class _Cell:
    """One cell of a sweep: its folder, job number and overrides, and the sweep around it."""

    run_dir: Path
    job: int
    overrides: list[str]
    sweep_dir: Path | None
    total: int | None

    def shown_overrides(self) -> str:
        """The overrides that tell this cell apart from the sweep's others."""
        sweep = _read_json(self.sweep_dir / SWEEP_FILE) if self.sweep_dir else None
        kept = [o for o in self.overrides if not _is_sweep_setting(o)]
        return progress.distinct_overrides(kept, (sweep or {}).get("command"))

    def best_val_acc(self) -> float | None:
        record = _read_json(RunDir(self.run_dir).metrics_json) or {}
        value = (record.get("metrics") or {}).get("val/acc_best")
        return float(value) if value is not None else None

    def announce_end(self, status: RunStatus, traceback_file: Path | None = None) -> None:
        eta: tuple[float | None, float | None] = (None, None)
        if self.sweep_dir is not None:
            sweep = _read_json(self.sweep_dir / SWEEP_FILE) or {}
            eta = progress.sweep_eta(sweep, collect_cells(self.sweep_dir), self.total)
        progress.cell_ended(
            self.job,
            self.total,
            status.record,
            self.best_val_acc(),
            eta,
            str(traceback_file) if traceback_file else None,
        )


def _run_locked_cell(cell: _Cell, resume: bool, train: Callable[[RunStatus], T]) -> T | None:
    run_dir, job_num, overrides, sweep_dir = cell.run_dir, cell.job, cell.overrides, cell.sweep_dir
    files = RunDir(run_dir)
    previous = read_status(run_dir) or {}
    _check_same_cell(run_dir, previous, overrides)
    attempt = int(previous.get("attempt", 0)) + 1
    if files.traceback_txt.is_file():  # keep the earlier failure next to its attempt
        os.replace(files.traceback_txt, files.earlier_traceback(attempt - 1))
    plan = plan_resume(run_dir, resume)
    status = RunStatus(
        run_dir,
        job=job_num,
        overrides=overrides,
        action=plan.action,
        resumed_from=str(plan.ckpt_path) if plan.ckpt_path else None,
        attempt=attempt,
        history=[*previous.get("history", []), *([_brief(previous)] if previous else [])],
    )
    status.start()
    if plan.action == "skip":
        progress.cell_skipped(job_num, cell.total, cell.shown_overrides(), cell.best_val_acc())
    else:
        progress.cell_started(job_num, cell.total, cell.shown_overrides())
    try:
        result = train(status)
    except RunPruned as stop:  # a search's pruner ended it: a normal end, not a failure
        log.info("Cell %d %s.", job_num, stop)
        status.end_after_error("pruned", pruned_epoch=stop.epoch + 1, reason=str(stop))
        return None
    except RunInterrupted:
        status.end_after_error("interrupted")
        if sweep_dir is not None:
            _update_sweep(sweep_dir, status="interrupted")
        cell.announce_end(status)
        raise
    except Exception as err:
        # The traceback goes to the cell's train.log and traceback.txt; the console gets the
        # cell's one end line, which names the error and the file.
        log.info("Cell %d (%s) failed.", job_num, " ".join(overrides), exc_info=True)
        write_atomic(files.traceback_txt, "".join(traceback.format_exception(err)))
        status.end_after_error("failed", error=f"{type(err).__name__}: {err}")
        cell.announce_end(status, files.traceback_txt)
        return None
    if status.status == "running":
        status.end("skipped" if plan.action == "skip" else "completed")
    if plan.action != "skip":
        cell.announce_end(status)
    return result


def _check_same_cell(run_dir: Path, previous: dict[str, Any], overrides: list[str]) -> None:
    """Refuse to skip or continue a cell that was run with other overrides.

    A grid's cells are checked against ``sweep.json`` up front; a search (Optuna) decides each
    trial's parameters as it goes and keeps them in its study, so this catches a trial folder
    left from another study (its storage deleted, the folder kept).
    """
    before = [o for o in previous.get("overrides", []) if not _is_sweep_setting(o)]
    now = [o for o in overrides if not _is_sweep_setting(o)]
    if before and sorted(before) != sorted(now):
        raise RuntimeError(
            f"'{run_dir}' holds a cell run with {' '.join(before)}, not {' '.join(now)}. "
            "Its folder belongs to another grid or study: start a new sweep directory "
            "(hydra.sweep.dir=...)."
        )


# Which process ran an attempt (host, pid) is kept: two writers on one sweep show up here.
_HISTORY_KEYS = (
    "attempt",
    "status",
    "action",
    "error",
    "started_at",
    "ended_at",
    "duration_s",
    "host",
    "pid",
)


def _brief(status: dict[str, Any]) -> dict[str, Any]:
    """One earlier attempt, as kept in a cell's history."""
    return {k: status[k] for k in _HISTORY_KEYS if k in status}


def _is_sweep_setting(override: str) -> bool:
    """``sweep.*`` overrides steer the sweep itself and may change between attempts."""
    return override.lstrip("+~").startswith("sweep.")


def expand_grid(config: DictConfig) -> list[list[str]] | None:
    """The overrides of every cell in launch order, as Hydra's basic sweeper expands them.

    ``None`` for another sweeper (e.g. Optuna), whose cells are only known once they run.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += [str(o) for o in config.hydra.overrides.task]
    overrides = OverridesParser.create().parse_overrides(arguments)
    batches = BasicSweeper.split_arguments(overrides, None)
    return [[o for o in cell if not _is_sweep_setting(o)] for cell in batches[0]]


def sweep_size(sweep_dir: Path) -> int | None:
    """How many cells the sweep's grid has (``sweep.json``); None for a search sweeper's."""
    grid = (_read_json(sweep_dir / SWEEP_FILE) or {}).get("grid")
    return len(grid) if grid else None


def collect_cells(sweep_dir: Path) -> dict[int, dict[str, Any]]:
    """Every cell's ``status.json`` under ``sweep_dir``, by job number."""
    cells = {}
    for path in sorted(sweep_dir.glob("**/" + STATUS_FILE)):
        status = _read_json(path)
        if status is None or "job" not in status:
            continue
        cell = {**status, "dir": str(path.parent.relative_to(sweep_dir))}
        holder = lock_holder(path.parent) if status.get("status") == "running" else None
        if holder is not None:
            cell["held_by"] = holder  # running now, in this or another process
        cells[int(status["job"])] = cell
    return cells


def _update_sweep(folder: Path, /, **fields: Any) -> dict[str, Any]:
    """Rewrite ``sweep.json`` with ``fields`` and every cell's current state, one process at a
    time (several processes may work on one sweep); returns the record written."""
    path = folder / SWEEP_FILE
    with exclusive_update(path):
        record = _read_json(path) or {"grid": None}
        record.update(fields)
        record["cells"] = _cell_rows(record.get("grid"), collect_cells(folder))
        write_json_atomic(path, record)
    return record


def _cell_rows(grid: list[list[str]] | None, cells: dict[int, dict[str, Any]]) -> list[dict]:
    """One row per grid cell (``pending`` if it never started), plus cells outside the grid."""
    rows = []
    for job, overrides in enumerate(grid or []):
        rows.append(cells.get(job, {"job": job, "overrides": overrides, "status": "pending"}))
    rows += [cell for job, cell in sorted(cells.items()) if grid is None or job >= len(grid)]
    return rows


class SweepTracker(Callback):
    """Hydra callback: writes ``sweep.json``, guards resumes, and fails the multirun loudly.

    Registered in ``conf/train.yaml`` under ``hydra.callbacks``. Hydra turns a
    callback's exceptions into warnings, so refusals and the final failure use ``SystemExit``.
    """

    def __init__(self) -> None:
        self._started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        resume = bool(OmegaConf.select(config, "sweep.resume", default=False))
        grid = expand_grid(config)
        if OmegaConf.select(config, "sweep.dry_run", default=False):
            raise SystemExit(_dry_run_listing(sweep_dir, grid))
        existing = _read_json(sweep_dir / SWEEP_FILE)
        # A search (grid None) continues the study its folder holds; its sweeper checks that
        # the command runs the same study.
        if existing is not None and not resume and grid is not None:
            raise SystemExit(
                f"Sweep directory '{sweep_dir}' already holds a sweep ({SWEEP_FILE}). Add "
                "`sweep.resume=true` to resume it (finished cells are skipped), or choose a new "
                "directory with `hydra.sweep.dir=...`."
            )
        if existing is not None and grid is not None and existing.get("grid") != grid:
            raise SystemExit(_grid_mismatch_message(sweep_dir, existing.get("grid") or [], grid))
        self._started = time.perf_counter()
        record = _update_sweep(
            sweep_dir,
            sweep_dir=str(sweep_dir.resolve()),
            command=[sys.executable, *sys.argv],
            status="running",
            started_at=now_iso(),
            attempt=int((existing or {}).get("attempt", 0)) + 1,
            grid=grid,
        )
        if grid is not None:
            log.info(
                "Sweep of %d cells in %s (attempt %d).", len(grid), sweep_dir, record["attempt"]
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        record = _update_sweep(sweep_dir)
        rows = record["cells"]
        # Cells another process holds are still running there; it reports on them.
        elsewhere = [row for row in rows if row["status"] == "running" and "held_by" in row]
        search = record.get("grid") is None
        failed = [
            row
            for row in rows
            if row["status"] not in ("completed", "skipped", "pruned")
            and row not in elsewhere
            # a search's running trial without a holder was lost with its process; the study
            # takes it up again on the next run
            and not (search and row["status"] == "running")
        ]
        status = "failed" if failed else "running" if elsewhere else "completed"
        duration = round(time.perf_counter() - (self._started or time.perf_counter()), 2)
        _update_sweep(sweep_dir, status=status, ended_at=now_iso(), duration_s=duration)
        counts = {
            s: sum(r["status"] == s for r in rows) for s in ("completed", "skipped", "pruned")
        }
        log.info(
            "Sweep finished here: %d completed, %d skipped, %d pruned, %d failed, %d still "
            "running in other processes (%s).",
            counts["completed"],
            counts["skipped"],
            counts["pruned"],
            len(failed),
            len(elsewhere),
            sweep_dir / SWEEP_FILE,
        )
        if failed:
            lines = [
                f"  #{r['job']} {' '.join(r['overrides'])}: {r['status']}"
                + (
                    f" ({r['error']}), see {sweep_dir / r['dir'] / TRACEBACK_FILE}"
                    if "error" in r
                    else ""
                )
                for r in failed
            ]
            advice = (
                "\nThe study counts failed trials as finished: fix the cause, then raise "
                "hydra.sweeper.n_trials to run more, or start a new study."
                if search
                else "\nFix the cause and rerun the same command with `sweep.resume=true "
                f"hydra.sweep.dir={sweep_dir}`: finished cells are skipped."
            )
            raise SystemExit(
                f"{len(failed)} of {len(rows)} cells did not complete:\n"
                + "\n".join(lines)
                + advice
            )


def _dry_run_listing(sweep_dir: Path, grid: list[list[str]] | None) -> int:
    """Print the cells a multirun would launch (``sweep.dry_run=true``); the exit status."""
    if grid is None:
        print("This sweeper decides its cells while it runs; there is no fixed grid to list.")
        return 0
    print(f"{len(grid)} cells -> {sweep_dir}/<job number>/")
    for job, overrides in enumerate(grid):
        print(f"  #{job:<3d} {' '.join(overrides)}")
    return 0


def _grid_mismatch_message(sweep_dir: Path, old: list[list[str]], new: list[list[str]]) -> str:
    """Explain why a resume was refused: the cells would land in other cells' directories."""
    first = next(
        (i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
        min(len(old), len(new)),
    )
    was = " ".join(old[first]) if first < len(old) else "(no such cell)"
    now = " ".join(new[first]) if first < len(new) else "(no such cell)"
    return (
        f"Cannot resume '{sweep_dir}': its grid differs from this command's ({len(old)} vs "
        f"{len(new)} cells; cell #{first} was `{was}`, now `{now}`). Resume with exactly the "
        "original overrides (see the `command` in sweep.json), or start a new sweep directory."
    )
