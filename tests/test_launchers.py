"""Hydra launchers: submitit's local executor (as on SLURM) and joblib's parallel jobs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import FAST_OVERRIDES, assert_scored_every_test_image, make_image_folder, run_module


def _multirun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_module("mbv3_lightning", "-m", *args, cwd=cwd)


def _cell_overrides(root: str) -> list[str]:
    return ["debug=fast", "dataset=image_folder", f"dataset.root={root}", "model.input_size=32"]


@pytest.mark.slow
def test_submitit_local_runs_a_job(tmp_path):
    data = make_image_folder(tmp_path / "data", splits={"train": 6, "test": 2})
    sweep = tmp_path / "sweep"
    result = _multirun(
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=15",
        *_cell_overrides(str(data)),
        *FAST_OVERRIDES,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((sweep / ".submitit").iterdir())  # the executor's own job folder
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert metrics["model"] == "mobilenet_v3_small"
    assert_scored_every_test_image(metrics, n_test=3 * 2)
    status = json.loads((sweep / "0" / "status.json").read_text())
    assert status["status"] == "completed"


@pytest.mark.slow
def test_joblib_runs_cells_in_parallel_and_records_failures(tmp_path):
    data = make_image_folder(tmp_path / "data", splits={"train": 6, "test": 2})
    sweep = tmp_path / "sweep"
    result = _multirun(
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *_cell_overrides(f"{data},{tmp_path / 'missing'}"),
        *FAST_OVERRIDES,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "1 of 2 cells did not complete" in result.stderr
    statuses = [json.loads((sweep / c / "status.json").read_text()) for c in ("0", "1")]
    assert [s["status"] for s in statuses] == ["completed", "failed"]
    assert statuses[0]["pid"] != statuses[1]["pid"]  # two worker processes
    # each worker prints its cell's start and end lines, in whichever order they come
    lines = [line for line in result.stdout.splitlines() if line.startswith("cell ")]
    assert sorted(" ".join(line.split()[:3]).rstrip(":") for line in lines) == [
        "cell 1/2 completed",
        "cell 1/2 started",
        "cell 2/2 failed",
        "cell 2/2 started",
    ]
    assert (sweep / "1" / "traceback.txt").is_file()
