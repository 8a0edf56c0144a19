"""What a sweep prints while it runs: one line when a cell starts, one when it ends.

``cell 1/4 started: model=mobilenet_v3_small seed=1`` (the overrides that tell the cells
apart), then ``cell 1/4 completed in 2:27, best val acc 0.8123; sweep 2:28, ETA 7:24``. A
cell a resumed sweep skips gets one line. The lines are INFO records of this module's logger,
which the training command's logging config (``conf/hydra/train.yaml``) prints plainly on
the console and into the cell's ``train.log``; the console shows no other INFO line.

Everything here reads the sweep's files (``sweep.json`` and the cells' ``status.json``), so the
lines are right for cells run in parallel by other processes (the joblib launcher) and for
resumed sweeps.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

from mbv3_lightning.runs.clock import clock

log = logging.getLogger(__name__)

# A cell in one of these states needs no more time in this sweep (a completed one from an
# earlier attempt is skipped in no time).
_DONE = ("completed", "skipped")


def _canonical(override: str) -> str | None:
    """An override as Hydra's sweepers write a cell's (``x=true`` -> ``x=True``); None for a
    sweep (``seed=1,2``) or what is no override (the program, ``-m``)."""
    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except OverrideParseException:
        return None
    if parsed.is_sweep_override():
        return None
    return f"{parsed.get_key_element()}={parsed.get_value_element_as_str()}"


def distinct_overrides(overrides: Sequence[str], command: Sequence[str] | None) -> str:
    """The cell's overrides that are not on the sweep's command line: the swept values
    (``seed=1`` of ``seed=1,2``, an experiment's grid, a search's proposals), which tell this
    cell apart from the others."""
    given = {_canonical(arg) for arg in command or ()}
    return " ".join([o for o in overrides if _canonical(o) not in given] or overrides)


def position(job: int, total: int | None) -> str:
    """``cell 3/4``, counted from 1; ``cell 3`` when the sweep's size is not known."""
    return f"cell {job + 1}/{total}" if total else f"cell {job + 1}"


def _time(iso: str | None) -> datetime | None:
    return datetime.fromisoformat(iso) if iso else None


def sweep_eta(
    sweep: Mapping[str, Any], cells: Mapping[int, Mapping[str, Any]], total: int | None
) -> tuple[float | None, float | None]:
    """(seconds since this attempt of the sweep started, seconds it still needs).

    The time left is the time from the first cell's start per cell run in this attempt
    (skipped cells excluded), times the cells still to run: the mean cell time when cells run
    one after another, and the right share of it when a launcher runs several at once. The
    launcher's start-up before the first cell is left out, as it is not paid again.
    """
    started = _time(sweep.get("started_at"))
    if started is None:
        return None, None
    now = datetime.now(timezone.utc)
    first: datetime | None = None
    ran = done = 0
    for cell in cells.values():
        state, ended = cell.get("status"), _time(cell.get("ended_at"))
        this_attempt = ended is None or ended >= started
        if state in ("completed", "failed") and this_attempt:
            ran += 1
            began = _time(cell.get("started_at")) or started
            first = began if first is None else min(first, began)
        if state in _DONE or (state == "failed" and this_attempt):
            done += 1
    elapsed = (now - started).total_seconds()
    if first is None or total is None:
        return elapsed, None
    return elapsed, (now - first).total_seconds() / ran * max(total - done, 0)


def cell_started(job: int, total: int | None, shown: str) -> None:
    log.info("%s started: %s", position(job, total), shown)


def cell_skipped(job: int, total: int | None, shown: str, val_acc: float | None) -> None:
    score = f", best val acc {val_acc:.4f}" if val_acc is not None else ""
    log.info("%s skipped (finished before%s): %s", position(job, total), score, shown)


def cell_ended(
    job: int,
    total: int | None,
    status: Mapping[str, Any],
    val_acc: float | None,
    eta: tuple[float | None, float | None],
    traceback_file: str | None = None,
) -> None:
    """The cell's final state, its time and best validation accuracy, and the sweep's ETA."""
    state = status.get("status", "?")
    took = clock(status.get("duration_s"))
    line = f"{position(job, total)} {state} " + (
        f"in {took}" if state == "completed" else f"after {took}"
    )
    if val_acc is not None:
        line += f", best val acc {val_acc:.4f}"
    if status.get("error"):
        line += f": {str(status['error']).splitlines()[0]}"
    elapsed, left = eta
    if elapsed is not None:
        line += f"; sweep {clock(elapsed)}, ETA {clock(left)}"
    if traceback_file:
        line += f" (traceback: {traceback_file})"
    log.info(line)
