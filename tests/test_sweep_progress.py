"""A sweep's console lines: which overrides name a cell, and the sweep's ETA from its files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mbv3_lightning.runs.clock import clock
from mbv3_lightning.sweeps.progress import distinct_overrides, position, sweep_eta

COMMAND = ["python", "-m", "mbv3_lightning", "-m", "experiment=demo_grid", "trainer.max_epochs=2"]


def _iso(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat()


def _cell(status: str, started_ago: float, ended_ago: float | None = None) -> dict:
    cell = {"status": status, "started_at": _iso(started_ago)}
    if ended_ago is not None:
        cell["ended_at"] = _iso(ended_ago)
    return cell


def test_a_cell_is_named_by_the_overrides_its_sweep_chose():
    # the experiment's grid (model x seed) and `seed=1,2` typed on the command line alike
    cell = ["model=mobilenet_v3_large", "seed=1", "experiment=demo_grid", "trainer.max_epochs=2"]
    assert distinct_overrides(cell, COMMAND) == "model=mobilenet_v3_large seed=1"
    # the cell holds the overrides as Hydra's sweeper rewrites them (`true` -> `True`)
    typed = ["model=mobilenet_v3_small", "seed=2", "trainer.deterministic=True"]
    command = ["-m", "model=mobilenet_v3_small", "seed=1,2", "trainer.deterministic=true"]
    assert distinct_overrides(typed, command) == "seed=2"
    assert distinct_overrides(cell, None) == " ".join(cell)
    assert position(2, 4) == "cell 3/4" and position(2, None) == "cell 3"


def test_eta_is_the_time_per_cell_so_far_times_the_cells_left():
    # started 130 s ago; the first cell began 120 s ago (10 s of launcher start-up); two cells
    # took 60 s each, so the two left need 120 s more
    sweep = {"started_at": _iso(130)}
    cells = {0: _cell("completed", 120, 60), 1: _cell("completed", 60, 0)}
    elapsed, left = sweep_eta(sweep, cells, total=4)
    assert elapsed == pytest.approx(130, abs=1)
    assert left == pytest.approx(120, abs=2)


def test_parallel_cells_share_the_time_and_failures_count_as_run():
    # two workers: cells 0 and 1 ran side by side for 100 s (1 failed); 2 is running now
    sweep = {"started_at": _iso(100)}
    cells = {
        0: _cell("completed", 100, 0),
        1: _cell("failed", 100, 0),
        2: _cell("running", 0),
    }
    _, left = sweep_eta(sweep, cells, total=4)
    assert left == pytest.approx(100, abs=2)  # 50 s per cell, cells 2 and 3 to go


def test_a_resumed_sweep_counts_skipped_cells_as_done_and_earlier_failures_as_left():
    sweep = {"started_at": _iso(50)}
    cells = {
        0: _cell("skipped", 50, 50),  # finished in an earlier attempt, skipped now
        1: _cell("completed", 900, 800),  # finished earlier, not reached yet: skipped next
        2: _cell("failed", 700, 650),  # failed earlier: runs again in this attempt
        3: _cell("completed", 40, 0),  # the only cell run in this attempt, 40 s
    }
    _, left = sweep_eta(sweep, cells, total=4)
    assert left == pytest.approx(40, abs=2)  # one cell (2) left at 40 s
    # nothing run yet in this attempt: no estimate
    assert sweep_eta(sweep, {0: cells[0]}, total=4)[1] is None


def test_durations_read_like_a_clock():
    assert [clock(s) for s in (None, 9.4, 59.6, 754, 3723)] == [
        "-:--",
        "0:09",
        "1:00",
        "12:34",
        "1:02:03",
    ]
