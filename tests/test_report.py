"""The sweep report: paper-style tables, figures and results.csv from run directories on disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from mbv3_lightning.cli.report import main
from mbv3_lightning.sweeps.figures import pareto_front
from mbv3_lightning.sweeps.report import write_report
from mbv3_lightning.training.run import run

from .conftest import FAST_OVERRIDES, run_module


def _write_run(
    run_dir: Path,
    *,
    model: str,
    seed: int,
    test_acc: float,
    ms: float | None = 2.0,
    with_roc: bool = True,
    params: int = 2_000_000,
) -> None:
    """A finished run directory with the files training and evaluation write."""
    run_dir.mkdir(parents=True)
    metrics = {
        "model": model,
        "dataset": "fruits360",
        "seed": seed,
        "input_size": 224,
        "epochs": 3,
        "metrics": {"test/acc": test_acc, "val/acc_best": test_acc - 0.01, "test/auroc": 0.99},
        "params_total": params,
        "train_time_s": 10.0 * seed,
        "config": {"task_name": "train"},
    }
    if ms is not None:  # keys newer runs add
        metrics.update(params=params, flops=2 * 60e6, test_ms_per_image={"median": ms, "p95": ms})
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with open(run_dir / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr"])
        for epoch in range(3):
            writer.writerow(
                [epoch, 1.0 / (epoch + 1), 0.5, 1.2 / (epoch + 1), 0.6 + 0.1 * epoch, 0.01]
            )
    if with_roc:
        macro = {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.9, 1.0], "auc": 0.99}
        (run_dir / "roc.json").write_text(
            json.dumps({"classes": {}, "micro": macro, "macro": macro})
        )


def _status(run_dir: Path, job: int, overrides: list[str], status: str, **extra) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"job": job, "overrides": overrides, "status": status, **extra}
    (run_dir / "status.json").write_text(json.dumps(record))


@pytest.fixture
def partial_sweep(tmp_path: Path) -> Path:
    """2 models x 2 seeds: three cells finished (one written before latency was recorded), one
    failed."""
    sweep = tmp_path / "sweep"
    grid = [[f"model={m}", f"seed={s}"] for m in ("mobilenet_v3_small", "alexnet") for s in (1, 2)]
    _write_run(sweep / "0", model="mobilenet_v3_small", seed=1, test_acc=0.90, ms=2.0)
    _write_run(sweep / "1", model="mobilenet_v3_small", seed=2, test_acc=0.94, ms=3.0)
    _write_run(sweep / "2", model="alexnet", seed=1, test_acc=0.80, ms=None, with_roc=False)
    for job in range(3):
        _status(sweep / str(job), job, grid[job], "completed")
    _status(sweep / "3", 3, grid[3], "failed", error="RuntimeError: out of memory")
    cells = [
        {**json.loads((sweep / str(j) / "status.json").read_text()), "dir": str(j)}
        for j in range(4)
    ]
    (sweep / "sweep.json").write_text(json.dumps({"grid": grid, "cells": cells}))
    return sweep


def test_report_tables_mean_std_and_missing_cells(partial_sweep):
    written = write_report(partial_sweep)
    rows = {row[0]: row for row in written["tables"]["fruits360"]}
    small, alex = rows["mobilenet_v3_small"], rows["alexnet"]
    assert small[5] == "0.9200 ± 0.0283"  # test acc: mean and sample std of 0.90 and 0.94
    assert small[6] == "2.50 ± 0.71"  # test ms/image
    assert small[1] == "2.00" and small[2] == "120.0"  # params (M), FLOPs (M)
    assert small[8] == "2"
    assert alex[5] == "0.8000" and alex[6] == "n/a" and alex[2] == "n/a"  # an older run
    assert alex[8] == "1 (1 missing)"

    report = written["report_md"].read_text()
    assert "## fruits360" in report and "## Cells without results" in report
    assert "model=alexnet seed=2 | failed | RuntimeError: out of memory" in report
    for name in ("curves_fruits360.png", "roc_fruits360.png", "test_time_fruits360.png"):
        assert f"]({name})" in report
        with Image.open(partial_sweep / "report" / name) as image:
            assert image.size[0] > 300 and image.size[1] > 200

    with open(written["results_csv"], newline="") as f:
        results = list(csv.DictReader(f))
    assert [r["status"] for r in results] == ["completed", "completed", "completed", "failed"]
    assert results[1]["test/acc"] == "0.94" and results[1]["test_ms_per_image"] == "3.0"
    assert results[3]["error"] == "RuntimeError: out of memory" and results[3]["test/acc"] == ""


def test_pareto_front_keeps_only_undominated_points():
    # (latency, accuracy): the 3 ms / 0.85 point is beaten by 2 ms / 0.90 on both axes.
    points = [(2.0, 0.90), (3.0, 0.85), (1.0, 0.70), (5.0, 0.95), (5.0, 0.93)]
    assert pareto_front(points) == [2, 0, 3]


@pytest.mark.slow
def test_report_on_a_real_run_directory_and_the_cli(
    compose_cfg, tiny_dataset, tmp_path, capsys, monkeypatch
):
    """A real training run's files (metrics.json, curves.csv, roc.json) fill the report."""
    sweep = tmp_path / "sweep"
    cfg = compose_cfg(
        ["dataset=image_folder", f"dataset.root={tiny_dataset}", "debug=limit", *FAST_OVERRIDES],
        sweep / "0",
    )
    cfg.model.input_size = 32
    record = run(cfg)
    monkeypatch.setenv("COLUMNS", "80")
    main([str(sweep), f"report.out={tmp_path / 'out'}"])
    console = capsys.readouterr().out
    assert "report.md" in console
    # an 80-column terminal gets the columns that fit, uncut, and is told where the rest are
    assert "│ mobilenet_v3_small │" in console and "More columns in report.md" in console
    assert max(len(line) for line in console.splitlines()) <= 80
    report = (tmp_path / "out" / "report.md").read_text()
    params_m, flops_m = record.cost.params / 1e6, record.cost.flops / 1e6
    assert f"| mobilenet_v3_small | {params_m:.2f} | {flops_m:.1f} |" in report
    assert f"| {record.metrics['test/acc']:.4f} |" in report
    assert "![curves tiny](curves_tiny.png)" in report
    assert "![roc tiny](roc_tiny.png)" in report
    assert (tmp_path / "out" / "pareto.png").is_file()


def test_report_errors_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="No runs found"):
        main([str(tmp_path / "empty")])
    with pytest.raises(SystemExit, match="Bad report option"):
        main([str(tmp_path / "empty"), "report.colour=red"])


@pytest.mark.slow
def test_report_logs_table_and_figures_to_wandb_offline(partial_sweep, capsys):
    main([str(partial_sweep), "report.wandb=true"])
    # the jobs' group (training/run.py): task name, then the sweep's date and time folders
    assert f"W&B group 'train-{partial_sweep.parent.name}-sweep'" in capsys.readouterr().out
    runs = list((partial_sweep / "report" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = runs[0] / "files" / "media"
    table = json.loads(next((media / "table").glob("results_*.table.json")).read_text())
    assert len(table["data"]) == 4 and "test/acc" in table["columns"]
    assert list((media / "images").glob("pareto_*.png"))
    assert list((media / "images" / "curves").glob("fruits360_*.png"))


@pytest.mark.slow
def test_demo_grid_end_to_end_and_its_report(tmp_path):
    """The README's sweep: `experiment=demo_grid`, then the report on its directory."""
    sweep = tmp_path / "demo_grid"
    result = run_module(
        "mbv3_lightning",
        "-m",
        "experiment=demo_grid",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    written = write_report(sweep)
    rows = {row[0]: row for row in written["tables"]["fruits360_mini"]}
    assert set(rows) == {"mobilenet_v3_small", "mobilenet_v3_large"}
    assert all(row[8] == "2" for row in rows.values())
    assert all(float(row[5].split(" ")[0]) >= 0.8 for row in rows.values())
    assert (sweep / "report" / "pareto.png").is_file()
