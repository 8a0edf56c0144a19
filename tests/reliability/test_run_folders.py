"""Run folders: unique and claimed atomically, and never shared with or written over another run."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mbv3_lightning.runs.run_dir import check_run_target, claim_run_dir, run_dir_for
from tests.conftest import FAST_OVERRIDES, make_image_folder


def _claim(base: str, barrier, results) -> None:
    barrier.wait()  # all processes claim at the same moment
    results.put(str(claim_run_dir(base)))


def test_folders_claimed_at_the_same_moment_are_distinct(tmp_path):
    base = str(tmp_path / "outputs" / "2026-01-01" / "12-00-00")
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(8), context.Queue()
    workers = [context.Process(target=_claim, args=(base, barrier, results)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    claimed = sorted(results.get(timeout=5) for _ in workers)
    assert len(set(claimed)) == 8
    assert claimed[0] == base and all(Path(p).is_dir() for p in claimed)
    assert {Path(p).name for p in claimed} == {"12-00-00", *(f"12-00-00-{i}" for i in range(1, 8))}


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mbv3_lightning", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished run folder (metrics.json, last.ckpt, .hydra/) made by the real command."""
    tmp = tmp_path_factory.mktemp("finished")
    data = make_image_folder(tmp / "data")
    args = [
        "dataset=image_folder",
        f"dataset.root={data}",
        *FAST_OVERRIDES,
        "debug=limit",
        "model.input_size=32",
    ]
    run_dir = tmp / "run"
    result = _train(*args, f"hydra.run.dir={run_dir}", cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, args


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != "train.log"
    }


def test_a_refused_rerun_leaves_the_finished_run_untouched(finished_run):
    run_dir, args = finished_run
    before = _snapshot(run_dir)
    result = _train(*args, "seed=7", f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert result.returncode != 0
    assert "already holds a run" in result.stderr and str(run_dir) in result.stderr
    assert _snapshot(run_dir) == before  # .hydra/config.yaml too: the guard ran first


def test_a_checkpoint_cannot_resume_into_a_finished_or_another_run(finished_run, tmp_path):
    run_dir, args = finished_run
    last = run_dir / "checkpoints" / "last.ckpt"
    before = _snapshot(run_dir)
    # into its own finished folder: refused before anything is written
    result = _train(*args, f"ckpt_path={last}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode != 0 and "holds a finished run" in result.stderr
    assert _snapshot(run_dir) == before
    # into a folder holding another run: refused (the two runs' curves would mix)
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    with pytest.raises(FileExistsError, match="holds another run"):
        check_run_target(other, last)
    # without hydra.run.dir, continuing a finished run goes to a new folder
    new = run_dir_for(str(last), str(tmp_path / "outputs" / "now"))
    assert Path(new) == tmp_path / "outputs" / "now"


def test_resume_of_an_unfinished_run_goes_back_into_its_folder(finished_run, tmp_path):
    run_dir, _ = finished_run
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    (unfinished / "metrics.json").unlink()  # as if killed before the end
    last = unfinished / "checkpoints" / "last.ckpt"
    assert Path(run_dir_for(str(last), str(tmp_path / "outputs" / "x"))) == unfinished
    check_run_target(unfinished, last)  # allowed
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_eight_trainings_started_together_from_a_shell_loop(tmp_path):
    data = make_image_folder(tmp_path / "data")
    args = " ".join(["dataset=image_folder", f"dataset.root={data}", *FAST_OVERRIDES, "debug=fast"])
    script = (
        f'for i in 1 2 3 4 5 6 7 8; do "{sys.executable}" -m mbv3_lightning {args} seed=$i '
        "> log$i.txt 2>&1 & done; wait"
    )
    subprocess.run(["bash", "-c", script], cwd=tmp_path, timeout=1800, check=True)
    for i in range(1, 9):
        log = (tmp_path / f"log{i}.txt").read_text()
        assert "Traceback" not in log, log[-3000:]
    folders = sorted(p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir())
    assert len(folders) == 8, folders
    seeds = set()
    for folder in folders:
        record = json.loads((folder / "metrics.json").read_text())
        overrides = yaml.safe_load((folder / ".hydra" / "overrides.yaml").read_text())
        # the folder's Hydra record and its results come from the same job
        assert f"seed={record['seed']}" in overrides
        seeds.add(record["seed"])
    assert seeds == set(range(1, 9))
