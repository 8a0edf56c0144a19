"""End-to-end runs with the real Trainer, real images on disk, real Hydra configs."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path

import pytest
import torch

from mbv3_lightning.runs.record import RunRecord
from mbv3_lightning.training.optim import cosine_factor, make_optimizer, node_factory
from mbv3_lightning.training.run import run

from .conftest import FAST_OVERRIDES, assert_scored_every_test_image, make_image_folder, run_module


def _overrides(root: Path, *extra: str) -> list[str]:
    return ["dataset=image_folder", f"dataset.root={root}", *FAST_OVERRIDES, *extra]


def test_limit_run_trains_tests_and_writes_its_files(compose_cfg, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    cfg = compose_cfg(_overrides(tiny_dataset, "debug=limit", "model.input_size=32"), out)
    record = run(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"] == pytest.approx(record.metrics)
    assert_scored_every_test_image(metrics, n_test=3 * 4)
    assert {"test/auroc", "test/f1", "val/acc_best"} <= set(metrics["metrics"])
    assert metrics["num_classes"] == 3 and metrics["class_names"] == ["apple", "banana", "cherry"]
    assert metrics["epochs"] == 2 and metrics["input_size"] == 32
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "split_manifest.json").is_file()
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/auroc", "val/acc_best"} <= set(
        rows[0]
    )
    assert sum(1 for r in rows if r["val/acc"]) == 2  # one validation row per epoch


def test_training_learns_the_colours(trained_checkpoint):
    """Real learning signal: the three colour classes are separable within a few epochs (the
    suite's trained fixture, whose run this reads)."""
    record = RunRecord.read(trained_checkpoint.parent.parent)
    assert record.metrics["test/acc"] >= 0.9
    assert record.metrics["val/acc_best"] >= 0.9
    assert record.timings.best_epoch is not None and record.timings.epochs == 6


def test_resume_continues_from_last_checkpoint(compose_cfg, tiny_dataset, tmp_path):
    out = tmp_path / "run"
    first = compose_cfg(_overrides(tiny_dataset, "debug=limit", "model.input_size=32"), out)
    run(first)
    with pytest.raises(FileExistsError, match="already holds a run"):
        run(first)  # same directory, no ckpt_path: refuses to overwrite
    last = f"{out}/checkpoints/last.ckpt"
    extended = _overrides(tiny_dataset, "debug=limit", "model.input_size=32", f"ckpt_path={last}")
    with pytest.raises(FileExistsError, match="holds a finished run"):
        run(compose_cfg(extended, out))  # a finished run is never resumed in place
    (out / "metrics.json").unlink()  # as if the first run had been killed after its last epoch
    resumed = compose_cfg(
        _overrides(
            tiny_dataset,
            "debug=limit",
            "trainer.max_epochs=3",
            "model.input_size=32",
            f"ckpt_path={out}/checkpoints/last.ckpt",
        ),
        out,
    )
    record = run(resumed)
    assert record.timings.epochs == 3
    with open(out / "metrics.csv") as f:
        epochs = {r["epoch"] for r in csv.DictReader(f) if r["val/acc"]}
    assert epochs == {"0", "1", "2"}


def test_wandb_offline_run_is_written_and_finished(compose_cfg, tiny_dataset, tmp_path):
    import wandb

    out = tmp_path / "run"
    cfg = compose_cfg(
        _overrides(tiny_dataset, "debug=limit", "model.input_size=32", "logger=wandb"), out
    )
    run(cfg)
    assert wandb.run is None  # finished, so the next job cannot log into it
    offline_runs = list((out / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    assert list(offline_runs[0].glob("*.wandb"))


def test_cosine_schedule_warms_up_then_decays_to_lrf():
    assert cosine_factor(0, 100, 10, 0.01) == pytest.approx(0.01)
    assert cosine_factor(10, 100, 10, 0.01) == pytest.approx(1.0)
    assert cosine_factor(55, 100, 10, 0.01) == pytest.approx(0.505)
    assert cosine_factor(100, 100, 10, 0.01) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "settings",
    [
        {
            "_target_": "torch.optim.SGD",
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 0.01,
            "nesterov": True,
        },
        {"_target_": "torch.optim.Adam", "lr": 0.01},
        {"_target_": "torch.optim.AdamW", "lr": 0.01, "weight_decay": 0.05},
    ],
)
def test_optimizers_are_fused_on_cpu_and_step_like_the_reference_loop(settings):
    def three_steps(fused: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        opt = make_optimizer(node_factory(settings), net.parameters())
        assert opt.defaults["fused"] is True
        if not fused:  # torch's default per-parameter implementation, same hyper-parameters
            accepted = inspect.signature(type(opt)).parameters
            same = {k: v for k, v in opt.defaults.items() if k in accepted}
            opt = type(opt)(net.parameters(), **{**same, "fused": None})
        for _ in range(3):
            opt.zero_grad()
            net(torch.randn(4, 8)).square().mean().backward()
            opt.step()
        return [p.detach().clone() for p in net.parameters()]

    for fused, reference in zip(three_steps(True), three_steps(False), strict=True):
        torch.testing.assert_close(fused, reference, atol=1e-6, rtol=1e-5)


def test_multirun_grid_gives_every_job_its_own_directory(tmp_path):
    roots = [
        make_image_folder(tmp_path / name, classes=classes, splits={"train": 6, "test": 2})
        for name, classes in (("data_a", ("x", "y")), ("data_b", ("p", "q", "r")))
    ]
    sweep_dir = tmp_path / "sweep"
    result = run_module(
        "mbv3_lightning",
        "-m",
        "model=mobilenet_v3_small,mobilenet_v3_large",
        "dataset=image_folder",
        f"dataset.root={roots[0]},{roots[1]}",
        "debug=limit",
        "model.input_size=32",
        "logger=wandb",
        f"hydra.sweep.dir={sweep_dir}",
        *FAST_OVERRIDES,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        seen.add((metrics["model"], metrics["num_classes"]))
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1
    assert seen == {(m, n) for m in ("mobilenet_v3_small", "mobilenet_v3_large") for n in (2, 3)}


@pytest.mark.slow
def test_demo_reaches_paper_grade_accuracy(tmp_path):
    """The README's demo command, unchanged: >= 0.95 test accuracy on the bundled test split."""
    result = run_module("mbv3_lightning", f"hydra.run.dir={tmp_path / 'demo'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["metrics"]["test/acc"] >= 0.95


@pytest.mark.slow
def test_compiled_network_trains_and_checkpoints_plain_keys(compose_cfg, tiny_dataset, tmp_path):
    """`compile=true` compiles in place: training works and checkpoints load uncompiled."""
    import torch

    out = tmp_path / "run"
    cfg = compose_cfg(
        _overrides(tiny_dataset, "debug=limit", "model.input_size=32", "compile=true"), out
    )
    summary = run(cfg)
    assert_scored_every_test_image(summary, n_test=3 * 4)
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert "net.features.0.0.weight" in state
    assert not any("_orig_mod" in key for key in state)


def test_the_sanity_check_scores_nothing_and_warns_of_nothing(compose_cfg, tmp_path, recwarn):
    """Its two batches of a class-sorted validation split hold one class: AUROC over the
    classes they lack warned "No positive samples", about scores nobody reads."""
    root = make_image_folder(tmp_path / "data", splits={"train": 6, "val": 4, "test": 2})
    overrides = ["dataset=image_folder", f"dataset.root={root}", *FAST_OVERRIDES]
    overrides += ["dataset.eval_batch_size=2", "model.input_size=32", "trainer.max_epochs=1"]
    out = tmp_path / "run"
    run(compose_cfg(overrides, out))
    assert not [w for w in recwarn if "No positive samples" in str(w.message)]
    with open(out / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row["val/acc"]]
    assert len(rows) == 1  # the epoch's validation only
    confusions = json.loads((out / "epoch_confusions.json").read_text())["epochs"]
    val = [c for c in confusions if c["stage"] == "val"]
    assert len(val) == 1 and sum(map(sum, val[0]["confusion"])) == 12  # 3 classes x 4 images
