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
from pathlib import Path
from typing import Any, TypeVar

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mbv3_lightning.runs.lock import RunLockedError, exclusive_update, lock_holder, run_lock
from mbv3_lightning.runs.resume import plan_resume
from mbv3_lightning.runs.run_dir import RunDir, write_atomic, write_json_atomic
from mbv3_lightning.runs.status import RunInterrupted, RunStatus, now_iso, read_status

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
) -> T | None:
    """Run one multirun cell, recording it in ``status.json``.

    The cell is locked for its whole run: a cell another process holds (two
    ``sweep.resume=true`` processes on one sweep) is left to it untouched, and this process
    goes on with the next one. A failure is logged, written to ``traceback.txt`` and
    ``status.json``, and swallowed (returns ``None``) so the remaining cells run on;
    :class:`SweepTracker` reports it at the end. An interruption (a signal) is recorded in the
    cell and in ``sweep.json`` and stops the sweep.
    """
    try:
        with run_lock(run_dir):
            return _run_locked_cell(run_dir, job_num, overrides, resume, train, sweep_dir)
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


def _run_locked_cell(
    run_dir: Path,
    job_num: int,
    overrides: list[str],
    resume: bool,
    train: Callable[[RunStatus], T],
    sweep_dir: Path | None,
) -> T | None:
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
    try:
        result = train(status)
    except RunInterrupted:
        status.end_after_error("interrupted")
        if sweep_dir is not None:
            _update_sweep(sweep_dir, status="interrupted")
        raise
    except Exception as err:
        log.exception("Cell %d (%s) failed.", job_num, " ".join(overrides))
        write_atomic(files.traceback_txt, "".join(traceback.format_exception(err)))
        status.end_after_error("failed", error=f"{type(err).__name__}: {err}")
        return None
    if status.status == "running":
        status.end("skipped" if plan.action == "skip" else "completed")
    return result


def _check_same_cell(run_dir: Path, previous: dict[str, Any], overrides: list[str]) -> None:
    """Refuse to skip or continue a cell that was run with other overrides.

    A grid's cells are checked against ``sweep.json`` up front; a search sweeper (Optuna)
    decides each trial's parameters as it goes, so a resumed study must propose the same
    trials again (a seeded sampler does) and this catches the case where it does not.
    """
    before = [o for o in previous.get("overrides", []) if not _is_sweep_setting(o)]
    now = [o for o in overrides if not _is_sweep_setting(o)]
    if before and sorted(before) != sorted(now):
        raise RuntimeError(
            f"'{run_dir}' holds a cell run with {' '.join(before)}, not {' '.join(now)}. "
            "A search sweeper must propose the same trials when resumed: give its sampler a "
            "seed (hydra.sweeper.sampler.seed=...), or start a new sweep directory."
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
        if existing is not None and not resume:
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
        failed = [
            row
            for row in rows
            if row["status"] not in ("completed", "skipped") and row not in elsewhere
        ]
        status = "failed" if failed else "running" if elsewhere else "completed"
        duration = round(time.perf_counter() - (self._started or time.perf_counter()), 2)
        _update_sweep(sweep_dir, status=status, ended_at=now_iso(), duration_s=duration)
        counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "skipped")}
        log.info(
            "Sweep finished here: %d completed, %d skipped, %d failed, %d still running in "
            "other processes (%s).",
            counts["completed"],
            counts["skipped"],
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
            raise SystemExit(
                f"{len(failed)} of {len(rows)} cells did not complete:\n"
                + "\n".join(lines)
                + "\nFix the cause and rerun the same command with `sweep.resume=true "
                f"hydra.sweep.dir={sweep_dir}`: finished cells are skipped."
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
