"""Distributed data parallel on 2 CPU processes (gloo), alone and inside a multirun."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import FAST_OVERRIDES, assert_scored_every_test_image, make_image_folder, run_module

DDP_ON_CPU = ["trainer=ddp_cpu", "trainer.devices=2"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_module("mbv3_lightning", *args, cwd=cwd)


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    data = make_image_folder(tmp_path / "data", splits={"train": 8, "test": 4})
    out = tmp_path / "run"
    result = _cli(
        "debug=fast",
        "dataset=image_folder",
        f"dataset.root={data}",
        "model.input_size=32",
        *DDP_ON_CPU,
        *FAST_OVERRIDES,
        f"hydra.run.dir={out}",
        # Lightning's INFO lines (which rank started) on the console, which shows warnings only
        "hydra.job_logging.handlers.console.level=INFO",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr + result.stdout
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in log
    assert "distributed_backend=gloo" in log
    metrics = json.loads((out / "metrics.json").read_text())  # written once, by rank 0
    assert_scored_every_test_image(metrics, n_test=3 * 4)  # both ranks' halves, gathered
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]  # no stray run dirs


@pytest.mark.slow
def test_ddp_inside_a_multirun_runs_each_cell_once(tmp_path):
    """Plain `ddp` would re-run the whole `-m` command in its second process."""
    data = make_image_folder(tmp_path / "data", splits={"train": 8, "test": 4})
    sweep = tmp_path / "sweep"
    result = _cli(
        "-m",
        "seed=1,2",
        "debug=fast",
        "dataset=image_folder",
        f"dataset.root={data}",
        "model.input_size=32",
        *DDP_ON_CPU,
        *FAST_OVERRIDES,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "using strategy 'ddp_spawn' instead of 'ddp'" in result.stderr + result.stdout
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "sweep"]
    for cell, seed in (("0", 1), ("1", 2)):
        assert json.loads((sweep / cell / "metrics.json").read_text())["seed"] == seed
    cells = json.loads((sweep / "sweep.json").read_text())["cells"]
    assert [c["status"] for c in cells] == ["completed", "completed"]
