"""Hyper-parameter search: the Optuna study on real runs, its report, and safe resuming."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from mbv3_lightning.sweeps.cells import run_cell

from .conftest import FAST_OVERRIDES, make_image_folder, run_module


def test_a_resumed_trial_with_other_parameters_is_refused(tmp_path):
    cell = tmp_path / "0"
    first = ["optimizer.lr=0.001", "model.label_smoothing=0.1"]
    assert run_cell(cell, job_num=0, overrides=first, resume=False, train=lambda status: 0.5) == 0.5
    assert json.loads((cell / "status.json").read_text())["status"] == "completed"
    # the same trial again (sweep.* settings may change): runs
    again = [*reversed(first), "sweep.resume=true"]
    assert run_cell(cell, job_num=0, overrides=again, resume=True, train=lambda status: 0.7) == 0.7
    # other parameters in the same directory: refused before anything runs
    other = ["optimizer.lr=0.003", "model.label_smoothing=0.1"]
    with pytest.raises(RuntimeError, match=r"optimizer\.lr=0\.001.*, not optimizer\.lr=0\.003"):
        run_cell(cell, job_num=0, overrides=other, resume=True, train=lambda status: 0.9)
    assert json.loads((cell / "status.json").read_text())["overrides"] == again


@pytest.mark.slow
def test_optuna_study_runs_its_trials_and_the_report_shows_the_best(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("x", "y"), splits={"train": 6, "test": 2})
    sweep = tmp_path / "sweep"
    result = run_module(
        "mbv3_lightning",
        "-m",
        "experiment=optuna_demo",
        "dataset=image_folder",
        f"dataset.root={root}",
        *FAST_OVERRIDES,
        "model.input_size=32",
        "trainer.max_epochs=1",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = {int(p.parent.name): json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")}
    assert sorted(trials) == [0, 1, 2]
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    values = {job: t["metrics"]["val/acc_best"] for job, t in trials.items()}
    assert best.best_value == pytest.approx(max(values.values()))
    assert set(best.best_params) == {
        "optimizer.lr",
        "optimizer.weight_decay",
        "model.label_smoothing",
    }
    # each trial trained with the parameters Optuna proposed
    lrs = {t["config"]["optimizer"]["lr"] for t in trials.values()}
    assert len(lrs) == 3 and all(3e-4 <= lr <= 1e-2 for lr in lrs)

    report = run_module("mbv3_lightning.cli.report", str(sweep), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (sweep / "report" / "report.md").read_text()
    assert "## Hyper-parameter search (Optuna): 3 trials" in text
    assert f"Best val/acc_best: **{best.best_value}**" in text
    assert f"`optimizer.lr={best.best_params['optimizer.lr']}`" in text
