"""Hyper-parameter search (`hydra/sweeper=optuna`): the search space, a study shared by
processes, resumed after `kill -9`, pruned trials, two objectives, and the report.

Studies run as a user runs them (`python -m mbv3_lightning -m ...`) on tiny real images, with a
real Optuna storage in the sweep folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from mbv3_lightning.extras import EXTRAS, MissingExtraError, has_module
from mbv3_lightning.runs.pruned import RunPruned
from mbv3_lightning.runs.record import Cost, Identity, RunRecord
from mbv3_lightning.sweeps.cells import run_cell
from mbv3_lightning.sweeps.search.objectives import check_objectives, label, objective_value
from mbv3_lightning.sweeps.search.space import SearchSpaceError, parse_search_space
from mbv3_lightning.sweeps.search.storage import lock_path, open_storage, storage_spec, study_lock
from mbv3_lightning.sweeps.search.study import (
    Holder,
    claim_trials,
    ensure_budget,
    join_study,
    open_study,
    take_up_abandoned,
)

from .conftest import FAST_OVERRIDES, REPO_ROOT, make_image_folder, run_module


def _study_args(data: Path, sweep: Path, *extra: str) -> list[str]:
    """A one-parameter study of tiny trials (32 px, two colour classes)."""
    return [
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.study_name=tiny",
        "hydra.sweeper.sampler.seed=0",
        "optimizer.lr=tag(log,interval(0.001,0.03))",
        "dataset=image_folder",
        f"dataset.root={data}",
        *FAST_OVERRIDES,
        "model.input_size=32",
        "trainer.log_every_n_steps=1",
        "test=false",  # the objectives here need no test split; each trial ends sooner
        f"hydra.sweep.dir={sweep}",
        *extra,
    ]


def _load(sweep: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep / 'optuna.db'}")


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _fingerprint(folder: Path) -> tuple[float, str]:
    metrics = folder / "metrics.json"
    return metrics.stat().st_mtime, hashlib.sha256(metrics.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the space
def test_search_space_keeps_the_hydra_optuna_syntax():
    space = parse_search_space(
        {
            "optimizer.lr": "tag(log, interval(0.0003, 0.01))",
            "model.label_smoothing": "interval(0.0, 0.2)",
            "model.input_size": "96,128,160",
            "model.net.width_mult": "choice(0.5, 0.75, 1.0)",
            "trainer.max_epochs": 3,
        },
        ["dataset.batch_size=range(8,40,8)", "+depth=tag(int, interval(1, 4))", "seed=7"],
    )
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(0.0003, 0.01, log=True),
        "model.label_smoothing": FloatDistribution(0.0, 0.2),
        "model.input_size": CategoricalDistribution([96, 128, 160]),
        "model.net.width_mult": CategoricalDistribution([0.5, 0.75, 1.0]),
        # Hydra's range excludes its stop: 8, 16, 24, 32
        "dataset.batch_size": IntDistribution(8, 32, step=8),
        "depth": IntDistribution(1, 4),
    }
    assert space.fixed == ["trainer.max_epochs=3", "seed=7"]
    overrides = space.overrides({"optimizer.lr": 1e-3, "depth": 2, "model.input_size": 128})
    assert overrides == [
        "optimizer.lr=0.001",
        "+depth=2",
        "model.input_size=128",
        "trainer.max_epochs=3",
        "seed=7",
    ]
    # what the study records, so a rerun that searches something else is refused
    assert space.describe()["params"]["optimizer.lr"] == "tag(log, interval(0.0003, 0.01))"
    assert space.describe()["params"]["dataset.batch_size"] == "range(8, 40, 8)"
    assert parse_search_space({"n": "tag(int, log, interval(1, 64))"}).distributions == {
        "n": IntDistribution(1, 64, log=True)
    }
    # a choice of lists is a choice of their override text, which Hydra reads back as lists
    scales = parse_search_space({"dataset.scale": "choice([0.25,1.0],[0.6,1.0])"})
    assert scales.overrides({"dataset.scale": "[0.6,1.0]"}) == ["dataset.scale=[0.6,1.0]"]
    # the command line wins over hydra.sweeper.params, as everywhere in Hydra
    fixed = parse_search_space({"optimizer.lr": "interval(0.1, 0.2)"}, ["optimizer.lr=0.05"])
    assert fixed.distributions == {} and fixed.fixed == ["optimizer.lr=0.05"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"a": "tag(log, choice(1, 2))"}, r"applies to interval\(\.\.\.\) and range"),
        ({"a": "tag(cube, interval(1, 2))"}, r"unknown tag \['cube'\]"),
        ({"a": "tag(log, interval(0, 1))"}, r"hydra\.sweeper\.params\.a: .*low"),
        ({"a": "tag(int, interval(1.5, 4))"}, "whole numbers"),
    ],
)
def test_a_search_space_optuna_cannot_sample_is_one_clear_error(params, message):
    with pytest.raises(SearchSpaceError, match=message):
        parse_search_space(params)


def test_hydra_finds_the_sweeper_in_its_plugin_namespace():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    from mbv3_lightning.sweeps.search import SWEEPER_TARGET

    found = {f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)}
    assert SWEEPER_TARGET in found
    assert OmegaConf.load(REPO_ROOT / "conf/hydra/sweeper/optuna.yaml")._target_ == SWEEPER_TARGET


def test_the_search_code_imports_without_a_deprecation_warning(tmp_path):
    modules = [
        "hydra_plugins.mbv3_optuna_sweeper.optuna_sweeper",
        "mbv3_lightning.sweeps.search.sweeper",
        "mbv3_lightning.sweeps.search.trial",
        "mbv3_lightning.sweeps.search.report",
        "mbv3_lightning.training.pruning",
        "mbv3_lightning.cli.train",
    ]
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", f"import {', '.join(modules)}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""


# --------------------------------------------------------------------------- the budget
def _claim_worker(kind: str, barrier_file: str, out: str) -> None:
    """Create or join the study as the sweeper does, then claim trials one by one until none
    is left; write the numbers claimed."""
    folder = Path(out).parent
    spec = storage_spec(kind, folder)
    while not Path(barrier_file).exists():  # start together: all open a storage not there yet
        time.sleep(0.01)
    lock = lock_path(spec, folder)
    storage, study_id = join_study(spec, lock, "shared", ["maximize"], 20, {"space": "x"})
    claimed = []
    while True:
        with study_lock(lock):
            claims = claim_trials(storage, study_id, 20, 1, Holder.this_process())
        if not claims:
            break
        claimed += [c.number for c in claims]
    Path(out).write_text(json.dumps(claimed))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_processes_starting_one_study_together_take_each_trial_once(tmp_path, kind):
    import multiprocessing

    barrier = tmp_path / "go"
    context = multiprocessing.get_context("spawn")
    outs = [tmp_path / f"claimed{i}.json" for i in range(3)]
    workers = [
        context.Process(target=_claim_worker, args=(kind, str(barrier), str(out))) for out in outs
    ]
    for worker in workers:
        worker.start()
    barrier.touch()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    claimed = [n for out in outs for n in json.loads(out.read_text())]
    assert sorted(claimed) == list(range(20))  # every trial once, none twice, none extra
    storage = open_storage(storage_spec(kind, tmp_path), create=False)
    study_id = storage.get_study_id_from_name("shared")
    assert storage.get_n_trials(study_id) == 20
    assert ensure_budget(storage, study_id, 20, created=False) == 20  # a rerun adds nothing


def test_a_trial_whose_process_died_is_taken_up_with_its_parameters(tmp_path):
    storage = open_storage(storage_spec("sqlite", tmp_path))
    study_id, _ = open_study(storage, "s", ["maximize"])
    ensure_budget(storage, study_id, 2, created=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    gone = Holder(Holder.this_process().host, int(dead.stdout), None)
    (claim,) = claim_trials(storage, study_id, 2, 1, gone)
    trial = optuna.trial.Trial(optuna.load_study(study_name="s", storage=storage), claim.trial_id)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)

    alive = Holder.this_process()
    assert take_up_abandoned(storage, study_id, stale_after_s=3600) == [claim.number]
    again = claim_trials(storage, study_id, 2, 2, alive)
    assert [(c.number, c.taken_up) for c in again] == [(0, True), (1, False)]
    trial = optuna.trial.Trial(optuna.load_study(study_name="s", storage=storage), claim.trial_id)
    assert trial.suggest_float("lr", 1e-4, 1e-1, log=True) == lr  # the same trial, continued
    assert take_up_abandoned(storage, study_id, stale_after_s=3600) == []  # alive: kept


def test_a_pruned_cell_is_recorded_as_pruned_not_failed(tmp_path):
    def pruned(status):
        raise RunPruned(epoch=1, monitor="val/acc", value=0.25)

    cell = tmp_path / "3"
    assert run_cell(cell, job_num=3, overrides=["a=1"], resume=False, train=pruned) is None
    status = _json(cell / "status.json")
    assert status["status"] == "pruned" and status["pruned_epoch"] == 2
    assert "val/acc = 0.25" in status["reason"]
    assert not (cell / "traceback.txt").exists()


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


# --------------------------------------------------------------------------- whole studies
@pytest.mark.slow
def test_pruned_trials_are_pruned_in_the_study_the_folders_and_the_report(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=("x", "y"), splits={"train": 4})
    sweep = tmp_path / "study"
    result = run_module(
        "mbv3_lightning",
        *_study_args(data, sweep, "trainer.max_epochs=3", "hydra.sweeper.n_trials=2"),
        # accuracy can never reach 1.01: every trial is stopped after its first epoch
        "hydra/sweeper/pruner=threshold",
        "hydra.sweeper.pruner.lower=1.01",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = _load(sweep)
    assert [t.state for t in study.trials] == [TrialState.PRUNED, TrialState.PRUNED]
    assert all(list(t.intermediate_values) == [0] for t in study.trials)  # epoch 0 only
    for number in (0, 1):
        status = _json(sweep / str(number) / "status.json")
        assert status["status"] == "pruned" and status["pruned_epoch"] == 1
        assert not (sweep / str(number) / "metrics.json").exists()
    assert "Trial 0 pruned" in result.stdout
    assert "0 complete, 2 pruned, 0 failed" in result.stdout
    assert "2 pruned, 0 failed" in result.stdout  # the sweep's own summary line

    report = run_module("mbv3_lightning.cli.report", str(sweep), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (sweep / "report" / "report.md").read_text()
    assert "2 trials: 0 complete, 2 pruned, 0 failed" in text
    value = study.trials[0].intermediate_values[0]
    assert f"| 0 | pruned after epoch 1 (val/acc {value:.4f}) | n/a |" in text


@pytest.mark.slow
def test_a_study_killed_with_kill_9_ends_with_exactly_n_trials(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=("x", "y"), splits={"train": 8})
    sweep = tmp_path / "study"
    command = [
        sys.executable,
        "-m",
        "mbv3_lightning",
        *_study_args(data, sweep, "trainer.max_epochs=3", "hydra.sweeper.n_trials=4"),
        "hydra/sweeper/pruner=none",
    ]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoint = sweep / "2" / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 600
        while not _loads(checkpoint):  # trial 2 is under way: 0 and 1 are finished
            assert proc.poll() is None, "the study ended before trial 2 saved a checkpoint"
            assert time.monotonic() < deadline, "trial 2 saved no checkpoint in time"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    states = [t.state for t in _load(sweep).trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING, TrialState.WAITING]
    finished = {n: _fingerprint(sweep / str(n)) for n in (0, 1)}

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    study = _load(sweep)
    assert len(study.trials) == 4
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert "Trial 2 lost its process; taking it up again." in again.stdout
    for number, fingerprint in finished.items():  # not run again
        assert _fingerprint(sweep / str(number)) == fingerprint
        assert _json(sweep / str(number) / "status.json")["attempt"] == 1
    taken_up = _json(sweep / "2" / "status.json")
    assert taken_up["action"] == "resume" and taken_up["attempt"] == 2
    assert taken_up["history"][0]["status"] == "running"  # the attempt that was killed
    assert study.trials[2].params == {"optimizer.lr": study.trials[2].params["optimizer.lr"]}
    assert _json(sweep / "2" / "metrics.json")["epochs"] == 3


def _loads(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception:
        return False  # still being written


@pytest.mark.slow
def test_two_processes_started_together_share_one_study(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=("x", "y"), splits={"train": 4})
    sweep = tmp_path / "study"
    command = [
        sys.executable,
        "-m",
        "mbv3_lightning",
        *_study_args(data, sweep, "trainer.max_epochs=1", "hydra.sweeper.n_trials=6"),
        "hydra/sweeper/pruner=none",
    ]
    procs = [
        subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=900) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    study = _load(sweep)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    statuses = [_json(sweep / str(n) / "status.json") for n in range(6)]
    assert all(s["attempt"] == 1 and s["status"] == "completed" for s in statuses)
    assert {s["pid"] for s in statuses} == {p.pid for p in procs}  # both took trials
    assert len({t.params["optimizer.lr"] for t in study.trials}) == 6  # no trial proposed twice


@pytest.mark.slow
def test_two_objectives_give_a_pareto_front_in_the_report(tmp_path):
    data = make_image_folder(tmp_path / "data", classes=("x", "y"), splits={"train": 4})
    sweep = tmp_path / "study"
    result = run_module(
        "mbv3_lightning",
        *_study_args(data, sweep, "trainer.max_epochs=1", "hydra.sweeper.n_trials=2"),
        "model.net.width_mult=0.5,1.0",
        "optimizer.lr=0.01",  # fixed: the grid is the three widths
        "hydra/sweeper/sampler=grid",
        "hydra/sweeper/pruner=none",
        "hydra.sweeper.objective=[val/acc_best,params]",
        "hydra.sweeper.direction=[maximize,minimize]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = _load(sweep)
    assert len(study.trials) == 2 and all(t.state == TrialState.COMPLETE for t in study.trials)
    widths = sorted(t.params["model.net.width_mult"] for t in study.trials)
    assert widths == [0.5, 1.0]  # the grid, each point once
    params = {t.number: t.values[1] for t in study.trials}
    front = {t.number for t in study.best_trials}
    smallest = min(params, key=params.get)
    assert smallest in front  # nothing is smaller: always on the front
    results = OmegaConf.load(sweep / "optimization_results.yaml")
    assert {s.trial for s in results.solutions} == front

    report = run_module("mbv3_lightning.cli.report", str(sweep), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (sweep / "report" / "report.md").read_text()
    assert f"### Pareto front: {len(front)} of 2 trials" in text
    trial = study.trials[smallest]
    overrides = trial.user_attrs["overrides"]
    assert f"model.net.width_mult={trial.params['model.net.width_mult']}" in overrides
    assert f"`mbv3 train {' '.join(overrides)}`" in text  # ready to paste
    dominated = 2 - len(front)
    assert f"### Dominated trials: {dominated}" in text
    for name in ("search_pareto", "search_history"):
        assert (sweep / "report" / f"{name}.png").is_file()
        assert (sweep / "report" / f"{name}.pdf").is_file()


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
    assert f"Best val/acc_best: **{best.best_value:.4f}**" in text
    assert f"optimizer.lr={best.best_params['optimizer.lr']!r}" in text


# ---- the phone's cost: the trial's best checkpoint as an ExecuTorch .pte (docs/search.md)

needs_executorch = pytest.mark.skipif(
    not has_module("executorch"),
    reason=f"ExecuTorch is not installed: {EXTRAS['mobile'].install}",
)
PTE_OBJECTIVES = [
    "hydra/sweeper/pruner=none",  # Optuna prunes single-objective studies only
    "hydra.sweeper.objective=[val/acc_best,pte_ms_per_image]",
    "hydra.sweeper.direction=[maximize,minimize]",
]
PTE_SEARCH = ["hydra/sweeper=optuna", *PTE_OBJECTIVES]


def test_the_pte_latency_is_a_cost_a_study_can_minimise():
    """metrics.json keeps the .pte latency through a write and a read; the study's objective
    reads its median; a run that did not time it writes no such keys and has no value."""
    identity = Identity(model="mobilenet_v3_small", dataset="d", seed=0, run_dir="r")
    timed = RunRecord(
        identity=identity,
        cost=Cost(pte_ms_per_image={"median": 0.66, "p95": 0.9}, pte_threads=1, pte_size_mb=6.15),
    )
    check_objectives(["val/acc_best", "pte_ms_per_image"], ["maximize", "minimize"])
    back = RunRecord.from_json(json.loads(json.dumps(timed.to_json())))
    assert objective_value(back, "pte_ms_per_image") == 0.66
    assert (back.cost.pte_threads, back.cost.pte_size_mb) == (1, 6.15)
    assert label("pte_ms_per_image") == "ExecuTorch .pte ms per image (batch 1, median)"
    untimed = RunRecord(identity=identity)
    assert not {k for k in untimed.to_json() if k.startswith("pte_")}
    assert objective_value(untimed, "pte_ms_per_image") is None


def test_a_trial_times_its_pte_only_when_asked_and_says_what_it_needs(monkeypatch):
    """Off by default; on for a study that names the objective (or pte_timing.enabled=true);
    without the test there is no image to time, and without ExecuTorch the install line,
    both before any training."""
    from hydra.core.hydra_config import HydraConfig

    from mbv3_lightning.cli.config import compose_config
    from mbv3_lightning.cli.config_check import ConfigError
    from mbv3_lightning.cli.pte_timing import pte_cost

    def cost(*overrides: str):
        cfg = compose_config("train", overrides, hydra_runtime=True)
        return pte_cost(cfg, HydraConfig.get())

    assert cost() is None
    assert cost("hydra/sweeper=optuna") is None  # a study on val/acc_best alone
    with pytest.raises(ConfigError, match="needs test=true"):
        cost(*PTE_SEARCH, "test=false")
    monkeypatch.setitem(sys.modules, "executorch", None)
    for overrides in (PTE_SEARCH, ["pte_timing.enabled=true"]):
        with pytest.raises(MissingExtraError, match=r"pte_timing .* \(executorch\)\. Install"):
            cost(*overrides)


@pytest.mark.slow
@needs_executorch
def test_a_study_minimises_the_pte_latency_each_trial_measured(tmp_path):
    """A real two-objective study on accuracy and the .pte latency: each trial lowers its best
    checkpoint to ExecuTorch after the test, times it on one thread, records it in its
    metrics.json, and the study's second value is that median."""
    data = make_image_folder(tmp_path / "data", classes=("x", "y"), splits={"train": 4, "test": 2})
    sweep = tmp_path / "study"
    args = _study_args(data, sweep, "trainer.max_epochs=1", "hydra.sweeper.n_trials=2")
    args.remove("test=false")  # the latency is measured on a test image after the test
    timing = ["pte_timing.runs=5", "pte_timing.warmup=2"]
    result = run_module("mbv3_lightning", *args, *PTE_OBJECTIVES, *timing, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    study = _load(sweep)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        record = RunRecord.read(sweep / str(trial.number))
        pte = record.cost.pte_ms_per_image
        assert pte is not None and 0 < pte["median"] <= pte["p95"]
        assert record.cost.pte_threads == 1 and record.cost.pte_size_mb > 1
        assert trial.values == [record.metrics["val/acc_best"], pte["median"]]
