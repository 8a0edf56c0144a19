"""Fault-tolerant, resumable multiruns: real `python -m mbv3_lightning -m` subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mbv3_lightning.training.callbacks import NonFiniteLossError
from mbv3_lightning.training.run import resolve_input_size, run

from .conftest import FAST_OVERRIDES, make_image_folder, run_module

# Tiny, deterministic cells: 32 px images, 3 classes, a few batches per epoch.
CELL_OVERRIDES = [
    "dataset=image_folder",
    "model.input_size=32",
    "trainer.deterministic=true",
    "scheduler=cosine",
    "scheduler.warmup_epochs=0",
    *FAST_OVERRIDES,
]


def _multirun(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return run_module("mbv3_lightning", "-m", *args, cwd=cwd, timeout=timeout)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _fingerprint(run_dir: Path) -> dict[str, tuple[float, str]]:
    """mtime and content hash of every training output of a cell (not Hydra's own files)."""
    files = [run_dir / n for n in ("metrics.json", "metrics.csv", "split_manifest.json")]
    files += sorted((run_dir / "checkpoints").glob("*.ckpt"))
    return {
        str(p.relative_to(run_dir)): (p.stat().st_mtime, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in files
    }


# A sweep cell's console lines (mbv3_lightning/sweeps/progress.py): m:ss or h:mm:ss.
CLOCK = r"\d+:\d\d(:\d\d)?"
ETA = rf"sweep {CLOCK}, ETA {CLOCK}"


def _cell_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("cell ")]


def _best_val_acc(run_dir: Path) -> str:
    return f"{_json(run_dir / 'metrics.json')['metrics']['val/acc_best']:.4f}"


@pytest.mark.slow
def test_failing_cell_is_recorded_and_the_others_complete(tmp_path):
    good = make_image_folder(tmp_path / "good", splits={"train": 6, "test": 2})
    missing = tmp_path / "not_there"
    sweep_dir = tmp_path / "sweep"
    args = [
        f"dataset.root={good},{missing}",
        "debug=limit",
        f"hydra.sweep.dir={sweep_dir}",
        *CELL_OVERRIDES,
    ]
    result = _multirun(*args, cwd=tmp_path)

    assert result.returncode != 0
    assert "1 of 2 cells did not complete" in result.stderr
    assert f"#1 dataset.root={missing}" in result.stderr
    assert "FileNotFoundError" in result.stderr and "sweep.resume=true" in result.stderr
    # One line as each cell starts and one as it ends, named by the override that differs;
    # the failure's traceback is in its file, not on the console.
    lines = _cell_lines(result.stdout)
    assert lines[0] == f"cell 1/2 started: dataset.root={good}"
    assert re.fullmatch(rf"cell 1/2 completed in {CLOCK}, best val acc [\d.]+; {ETA}", lines[1])
    assert lines[2] == f"cell 2/2 started: dataset.root={missing}"
    assert re.fullmatch(
        rf"cell 2/2 failed after {CLOCK}: FileNotFoundError: .*; sweep {CLOCK}, ETA 0:00 "
        rf"\(traceback: {re.escape(str(sweep_dir / '1' / 'traceback.txt'))}\)",
        lines[3],
    )
    assert len(lines) == 4 and "Traceback" not in result.stdout + result.stderr
    assert _json(sweep_dir / "0" / "metrics.json")["metrics"]["test/acc"] >= 0.0
    assert _json(sweep_dir / "0" / "status.json")["status"] == "completed"
    failed = _json(sweep_dir / "1" / "status.json")
    assert failed["status"] == "failed" and failed["error"].startswith("FileNotFoundError")
    assert "does not exist" in (sweep_dir / "1" / "traceback.txt").read_text()
    assert not (sweep_dir / "1" / "metrics.json").exists()
    sweep = _json(sweep_dir / "sweep.json")
    assert [c["status"] for c in sweep["cells"]] == ["completed", "failed"]
    assert sweep["status"] == "failed" and len(sweep["grid"]) == 2
    assert sweep["cells"][0]["duration_s"] > 0

    # Rerunning into the same directory without resume is refused before any cell runs.
    again = _multirun(*args, cwd=tmp_path)
    assert again.returncode != 0 and "add `sweep.resume=true`" in again.stderr.lower()
    # So is resuming with another grid: its cells would land in other cells' directories.
    other = _multirun(*args, "seed=1,2", "sweep.resume=true", cwd=tmp_path)
    assert other.returncode != 0 and "its grid differs" in other.stderr

    # Fix the cause, resume: the finished cell is skipped untouched, the failed one reruns.
    before = _fingerprint(sweep_dir / "0")
    make_image_folder(missing, splits={"train": 6, "test": 2})
    resumed = _multirun(*args, "sweep.resume=true", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = _cell_lines(resumed.stdout)
    assert lines[:2] == [
        f"cell 1/2 skipped (finished before, best val acc {_best_val_acc(sweep_dir / '0')}): "
        f"dataset.root={good}",
        f"cell 2/2 started: dataset.root={missing}",
    ]
    assert re.fullmatch(rf"cell 2/2 completed in {CLOCK}, best val acc [\d.]+; {ETA}", lines[2])
    assert len(lines) == 3 and lines[2].endswith("ETA 0:00")
    assert _fingerprint(sweep_dir / "0") == before
    assert _json(sweep_dir / "0" / "status.json")["status"] == "skipped"
    rerun = _json(sweep_dir / "1" / "status.json")
    assert rerun["status"] == "completed" and rerun["attempt"] == 2
    assert rerun["history"][0]["status"] == "failed"
    assert (sweep_dir / "1" / "traceback.attempt1.txt").is_file()
    assert _json(sweep_dir / "sweep.json")["status"] == "completed"


def test_non_finite_loss_stops_the_job_with_a_clear_message(compose_cfg, tiny_dataset, tmp_path):
    # A learning rate this large overflows the weights within a step or two.
    cfg = compose_cfg(
        [
            *CELL_OVERRIDES,
            f"dataset.root={tiny_dataset}",
            "optimizer=sgd",
            "optimizer.lr=1e30",
            "trainer.max_epochs=3",
        ],
        tmp_path / "run",
    )
    with pytest.raises(NonFiniteLossError, match=r"Training loss became (nan|inf).*optimizer\.lr"):
        run(cfg)
    assert not (tmp_path / "run" / "metrics.json").exists()


def _wait_for_checkpoint(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    """Until ``path`` holds a complete checkpoint (one that loads), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the sweep ended before its second cell wrote last.ckpt"
        if path.is_file():
            try:
                torch.load(path, map_location="cpu", weights_only=True)
                return
            except Exception:
                pass  # still being written
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s")


@pytest.mark.slow
def test_killed_sweep_resumes_exactly(tmp_path):
    data = make_image_folder(tmp_path / "data", splits={"train": 20, "test": 4})
    sweep_dir = tmp_path / "sweep"
    grid = ["seed=1,2", "optimizer.lr=0.01,0.003"]
    common = [f"dataset.root={data}", "trainer.max_epochs=4", *CELL_OVERRIDES]
    command = [sys.executable, "-m", "mbv3_lightning", "-m", *grid, *common]

    proc = subprocess.Popen(
        [*command, f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_checkpoint(sweep_dir / "1" / "checkpoints" / "last.ckpt", proc, timeout=900)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (sweep_dir / "0" / "metrics.json").is_file()
    assert not (sweep_dir / "1" / "metrics.json").exists()
    assert _json(sweep_dir / "1" / "status.json")["status"] == "running"
    first_cell = _fingerprint(sweep_dir / "0")

    resumed = subprocess.run(
        [*command, f"hydra.sweep.dir={sweep_dir}", "sweep.resume=true"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _fingerprint(sweep_dir / "0") == first_cell
    second = _json(sweep_dir / "1" / "status.json")
    assert second["action"] == "resume"
    assert second["resumed_from"] == str(sweep_dir / "1" / "checkpoints" / "last.ckpt")
    assert second["history"][0]["status"] == "running"  # the attempt that was killed
    sweep = _json(sweep_dir / "sweep.json")
    assert [c["status"] for c in sweep["cells"]] == [
        "skipped",
        "completed",
        "completed",
        "completed",
    ]
    for cell in ("0", "1", "2", "3"):
        assert _json(sweep_dir / cell / "metrics.json")["epochs"] == 4

    # The same cell, never interrupted, ends with exactly the same metrics.
    reference = run_module(
        "mbv3_lightning",
        *second["overrides"],
        f"hydra.run.dir={tmp_path / 'reference'}",
        cwd=tmp_path,
        timeout=600,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = _json(tmp_path / "reference" / "metrics.json")["metrics"]
    got = _json(sweep_dir / "1" / "metrics.json")["metrics"]
    assert got == expected


def test_paper_mbv3_dry_run_lists_its_grid(tmp_path):
    result = _multirun(
        "experiment=paper_mbv3",
        "sweep.dry_run=true",
        f"hydra.sweep.dir={tmp_path / 's'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split(maxsplit=1)[1] for line in result.stdout.splitlines() if "#" in line]
    assert len(lines) == 15 and result.stdout.startswith("15 cells")
    models = (
        "mobilenet_v3_large",
        "mobilenet_v3_small",
        "alexnet",
        "inception_v3",
        "shufflenet_v2",
    )
    expected = {(m, d) for m in models for d in ("fruits360", "monkeys10", "birds")}
    assert {(c.split()[0][6:], c.split()[1][8:]) for c in lines} == expected
    assert not (tmp_path / "s").exists()  # nothing ran, nothing was written


def test_paper_mbv3_cell_composes_with_the_papers_recipe(compose_cfg):
    cfg = compose_cfg(["experiment=paper_mbv3", "model=inception_v3", "dataset=birds"])
    assert resolve_input_size(cfg) == 299
    cfg = compose_cfg(["experiment=paper_mbv3", "model=alexnet", "dataset=fruits360"])
    assert resolve_input_size(cfg) == 224  # not the 100 px Fruits-360 photos' own size
    assert cfg.model.net.pretrained is True and cfg.dataset.val_fraction == 0.3
    # epochs per dataset (an assumption of the study: the paper states none)
    assert cfg.optimizer._target_ == "torch.optim.SGD" and cfg.trainer.max_epochs == 5
    assert cfg.dataset.preprocess == "paper" and cfg.dataset.protocol == "paper"
    # III.B: plain fine-tuning, no re-estimation of BatchNorm statistics (nor in the smoke run)
    assert cfg.callbacks.bn_recalibration is None
    smoke = compose_cfg(["experiment=paper_mbv3_smoke", "model=alexnet", "dataset=fruits360"])
    assert smoke.callbacks.bn_recalibration is None


def test_demo_grid_and_the_other_studies_compose(compose_cfg):
    cfg = compose_cfg(["experiment=demo_grid"])
    assert cfg.dataset.name == "fruits360_mini" and cfg.trainer.max_epochs == 8
    cfg = compose_cfg(["experiment=mobilenet_width_resolution", "model.input_size=160"])
    assert cfg.model.net.arch == "mobilenet_v1" and resolve_input_size(cfg) == 160
    assert cfg.callbacks.bn_recalibration is not None  # from scratch, an assumption: kept on
    cfg = compose_cfg(["experiment=car_colours"])
    assert cfg.callbacks.bn_recalibration is None  # the recipe re-estimates nothing
    assert (cfg.dataset.batch_size, cfg.trainer.max_epochs) == (8, 20)
    assert (cfg.optimizer.lr, cfg.scheduler.lrf) == (0.01, 0.01)
    assert cfg.scheduler._target_ == "mbv3_lightning.training.optim.cosine_schedule"


@pytest.mark.slow
def test_the_demo_grid_prints_one_start_and_one_end_line_per_cell(tmp_path):
    """`-m experiment=demo_grid trainer.max_epochs=2` (4 cells) on tiny images: a line as each
    cell starts and ends, with the sweep's ETA, and nothing else about the cells."""
    data = make_image_folder(tmp_path / "data", splits={"train": 6, "test": 2})
    result = _multirun(
        "experiment=demo_grid",
        "trainer.max_epochs=2",
        "dataset=image_folder",
        f"dataset.root={data}",
        "model.input_size=32",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = _cell_lines(result.stdout)
    cells = [(m, s) for m in ("mobilenet_v3_small", "mobilenet_v3_large") for s in (1, 2)]
    assert lines[::2] == [
        f"cell {i}/4 started: model={m} seed={s}" for i, (m, s) in enumerate(cells, 1)
    ]
    for i, line in enumerate(lines[1::2], 1):
        assert re.fullmatch(rf"cell {i}/4 completed in {CLOCK}, best val acc [\d.]+; {ETA}", line)
        assert line.endswith("ETA 0:00") == (i == 4)  # three cells' time left, then none
    # no bar, no summary table per cell, no launcher lines ("#0 : model=...")
    assert len(lines) == 8 and "│" not in result.stdout and "#0 :" not in result.stdout
