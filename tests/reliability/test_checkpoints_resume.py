"""last.ckpt after every epoch whatever val/acc does, best.ckpt beside it, and a resume that
continues the same run folder and curves and ends where an unbroken run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mbv3_lightning.runs.files import read_curves, read_curves_csv
from mbv3_lightning.training.run import run
from tests.conftest import FAST_OVERRIDES, make_image_folder

# A learning rate this high wrecks the network after the first epoch: val/acc is best at
# epoch 0 and never beats it (ties do not count as better), the case where Lightning's
# save_last on the monitored checkpoint left last.ckpt at epoch 0.
BEST_AT_EPOCH_0 = ["optimizer.lr=50", "callbacks.non_finite_loss_guard=null"]


def _overrides(root: Path, *extra: str) -> list[str]:
    return [
        "dataset=image_folder",
        f"dataset.root={root}",
        *FAST_OVERRIDES,
        "model.input_size=32",
        "trainer.max_epochs=3",
        "trainer.deterministic=true",
        *extra,
    ]


def _epoch(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]


def test_last_ckpt_holds_the_last_epoch_when_the_best_is_epoch_0(compose_cfg, tiny_dataset):
    cfg = compose_cfg(_overrides(tiny_dataset, *BEST_AT_EPOCH_0))
    record = run(cfg)
    out = Path(cfg.paths.output_dir)
    curves = read_curves(out / "metrics.csv")
    accuracies = [row["val/acc"] for row in curves]
    assert len(accuracies) == 3
    assert max(accuracies) == accuracies[0], f"the config must peak at epoch 0: {accuracies}"
    assert _epoch(out / "checkpoints" / "last.ckpt") == 2
    assert _epoch(out / "checkpoints" / "best.ckpt") == 0
    assert record.identity.best_ckpt == str(out / "checkpoints" / "best.ckpt")
    # one definition of the best epoch: the checkpoint's, the record's and the curves'
    assert record.timings.best_epoch == 0 and record.metrics["val/acc_best"] == accuracies[0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]


def test_last_ckpt_also_on_a_step_interval(compose_cfg, tiny_dataset, monkeypatch):
    """`callbacks.last_checkpoint.every_n_train_steps`: saves inside the epoch too."""
    cfg = compose_cfg(
        _overrides(
            tiny_dataset,
            "trainer.max_epochs=1",
            "callbacks.last_checkpoint.every_n_train_steps=2",
            "dataset.batch_size=4",
        )
    )
    saved_steps: list[int] = []
    from lightning.pytorch.callbacks import Callback

    class RecordSaves(Callback):
        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            saved_steps.append(trainer.global_step)

    from mbv3_lightning.training import run as run_module

    original = run_module.build_components

    def with_recorder(cfg):
        datamodule, model, callbacks, loggers = original(cfg)
        return datamodule, model, [*callbacks, RecordSaves()], loggers

    # The real components, plus a callback that records when a checkpoint is written.
    monkeypatch.setattr(run_module, "build_components", with_recorder)
    run(cfg)
    # 24 training images (3 classes x 10, minus the validation share) at 4 a batch: the step
    # saves come at steps 2, 4, ... before the epoch-end saves.
    assert saved_steps[:2] == [2, 4]
    assert _epoch(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt") == 0


def _wait_for(predicate, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
        time.sleep(0.05)
    raise AssertionError("timed out")


def _last_epoch(ckpt: Path) -> int | None:
    try:
        return _epoch(ckpt)
    except Exception:  # not there yet, or being renamed into place
        return None


@pytest.mark.slow
def test_killed_mid_epoch_2_and_resumed_ends_like_an_unbroken_run(tmp_path):
    """The README's resume command, after a SIGKILL in epoch 2 of a run whose best epoch is 0."""
    root = make_image_folder(tmp_path / "data", splits={"train": 40, "test": 4})
    marker = tmp_path / "paused"
    args = [*_overrides(root, *BEST_AT_EPOCH_0), "dataset.batch_size=4"]
    # Holds the killed run still at batch 3 of epoch 2, so the kill lands mid-epoch every time;
    # it never pauses again once the marker exists (the resume passes the same overrides).
    pause = [
        "+callbacks.pause._target_=tests.reliability.pause.PauseOnce",
        "+callbacks.pause.epoch=2",
        "+callbacks.pause.batch=3",
        f"+callbacks.pause.marker={marker}",
    ]
    command = [sys.executable, "-m", "mbv3_lightning"]
    repo_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": repo_root}

    unbroken_dir = tmp_path / "unbroken"
    done = subprocess.run(
        [*command, *args, f"hydra.run.dir={unbroken_dir}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [*command, *args, *pause, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        _wait_for(marker.exists, proc, timeout=900)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _epoch(last) == 1, "the kill must land after epoch 1's checkpoint"
    assert not (run_dir / "metrics.json").exists()

    # The documented resume command: only the checkpoint, no hydra.run.dir.
    resumed = subprocess.run(
        [*command, *args, *pause, f"ckpt_path={last}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (tmp_path / "outputs").exists(), "the resume must continue in the same folder"

    unbroken = json.loads((unbroken_dir / "metrics.json").read_text())["metrics"]
    finished = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert finished.keys() == unbroken.keys()
    for key, value in unbroken.items():
        assert finished[key] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), key
    curves = read_curves_csv(run_dir / "curves.csv")
    assert [row["epoch"] for row in curves] == [0, 1, 2]
    unbroken_curves = read_curves_csv(unbroken_dir / "curves.csv")
    for row, unbroken_row in zip(curves, unbroken_curves, strict=True):
        assert row.keys() == unbroken_row.keys()
        for key, value in unbroken_row.items():
            assert row[key] == pytest.approx(value, rel=1e-5, abs=1e-6, nan_ok=True), key
    assert _epoch(last) == 2
