"""SIGTERM (preemption, scancel, a time limit) is a normal way to stop: the run saves
``last.ckpt`` at the current step, records "interrupted", exits non-zero with the resume
command, and that command ends with the metrics of an unbroken run."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from mbv3_lightning.data.resumable_loader import ResumableLoader
from mbv3_lightning.runs.files import read_curves_csv
from mbv3_lightning.runs.status import INTERRUPTED_EXIT_CODE
from tests.conftest import FAST_OVERRIDES, make_image_folder

REPO_ROOT = str(Path(__file__).resolve().parents[2])
COMMAND = [sys.executable, "-m", "mbv3_lightning"]


class _Augmented(Dataset):
    """Each item draws from torch's generator, as the training transforms do."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.rand(2) + index, index


def _epoch(loader: ResumableLoader, progress: list[int], stop_after: int | None = None):
    """Batches of one epoch the way Lightning consumes them: one batch fetched ahead."""
    batches, iterator = [], iter(loader)
    ahead = next(iterator)
    for trained in range(len(loader)):
        if stop_after is not None and trained == stop_after:
            return batches
        batch = ahead
        ahead = next(iterator, None)
        _ = torch.rand(1)  # the training step draws too (dropout)
        batches.append(batch)
        progress[0] = trained + 1
    return batches


def test_a_loader_resumed_inside_an_epoch_gives_the_batches_an_unbroken_one_gives():
    torch.manual_seed(0)
    progress = [0]
    unbroken = ResumableLoader(
        _Augmented(), batch_size=2, shuffle=True, trained_batches=lambda: progress[0]
    )
    expected = _epoch(unbroken, progress)

    torch.manual_seed(0)
    progress = [0]
    first = ResumableLoader(
        _Augmented(), batch_size=2, shuffle=True, trained_batches=lambda: progress[0]
    )
    before = _epoch(first, progress, stop_after=3)
    state = first.position()  # a checkpoint after 3 trained batches, the 4th fetched

    torch.manual_seed(123)  # a new process: other generator states
    again = ResumableLoader(_Augmented(), batch_size=2, shuffle=True, trained_batches=lambda: 0)
    again.resume_from(state)
    after = _epoch(again, [3])[: len(expected) - 3]
    resumed = before + after
    assert len(resumed) == len(expected) == 6
    for got, want in zip(resumed, expected, strict=True):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def _overrides(root: Path, *extra: str) -> list[str]:
    return [
        "dataset=image_folder",
        f"dataset.root={root}",
        *FAST_OVERRIDES,
        "dataset.batch_size=4",
        "model.input_size=32",
        "trainer.max_epochs=3",
        "trainer.deterministic=true",
        *extra,
    ]


def _pause(marker: Path, epoch: int, batch: int) -> list[str]:
    return [
        "+callbacks.pause._target_=tests.reliability.pause.PauseOnce",
        f"+callbacks.pause.epoch={epoch}",
        f"+callbacks.pause.batch={batch}",
        f"+callbacks.pause.marker={marker}",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": REPO_ROOT}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900
    )


def _terminate_when_paused(args: list[str], cwd: Path, marker: Path) -> subprocess.CompletedProcess:
    """Start ``args``, send SIGTERM once the pause marker exists, return the finished run."""
    proc = subprocess.Popen(
        [*COMMAND, *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 900
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "the run never reached the pause"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _resume_command(stderr: str) -> list[str]:
    """The command the interrupted run printed, as arguments of `python -m mbv3_lightning`."""
    line = next(line for line in stderr.splitlines() if line.startswith("Resume with: "))
    words = shlex.split(line.removeprefix("Resume with: "))
    assert words[:2] == ["mbv3", "train"], line
    return words[2:]


def _assert_same_results(run_dir: Path, unbroken_dir: Path) -> None:
    finished = json.loads((run_dir / "metrics.json").read_text())
    unbroken = json.loads((unbroken_dir / "metrics.json").read_text())
    assert finished["metrics"].keys() == unbroken["metrics"].keys()
    for key, value in unbroken["metrics"].items():
        assert finished["metrics"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    curves = read_curves_csv(run_dir / "curves.csv")
    expected = read_curves_csv(unbroken_dir / "curves.csv")
    assert [row["epoch"] for row in curves] == [row["epoch"] for row in expected]
    for row, want in zip(curves, expected, strict=True):
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_mid_epoch_resumes_to_the_unbroken_result(tmp_path):
    root = make_image_folder(tmp_path / "data", splits={"train": 30, "test": 4})
    args = _overrides(root)
    unbroken = _run([*args, f"hydra.run.dir={tmp_path / 'unbroken'}"], tmp_path)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]

    run_dir, marker = tmp_path / "preempted", tmp_path / "paused"
    stopped = _terminate_when_paused(
        [*args, *_pause(marker, epoch=1, batch=5), f"hydra.run.dir={run_dir}"], tmp_path, marker
    )
    assert stopped.returncode == INTERRUPTED_EXIT_CODE, stopped.stderr[-3000:]
    assert "Interrupted by SIGTERM at epoch 2, batch 6" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    final = torch.load(tmp_path / "unbroken" / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = final["global_step"] // 3
    # saved at the step the signal arrived in: 6 batches into the second epoch
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, steps_per_epoch + 6)
    assert not (run_dir / "metrics.json").exists()

    resumed = _run(_resume_command(stopped.stderr), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (tmp_path / "outputs").exists(), "the resume continues in the run's own folder"
    _assert_same_results(run_dir, tmp_path / "unbroken")
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["train_time_s"] > 0


@pytest.mark.slow
def test_a_sweep_stopped_by_sigterm_mid_epoch_resumes_and_finishes_every_cell(tmp_path):
    root = make_image_folder(tmp_path / "data", splits={"train": 30, "test": 4})
    args = _overrides(root, "trainer.max_epochs=2")
    unbroken = _run([*args, "seed=1", f"hydra.run.dir={tmp_path / 'unbroken'}"], tmp_path)
    assert unbroken.returncode == 0, unbroken.stderr[-3000:]

    sweep_dir, marker = tmp_path / "sweep", tmp_path / "paused"
    stopped = _terminate_when_paused(
        ["-m", *args, "seed=1,2", *_pause(marker, 1, 3), f"hydra.sweep.dir={sweep_dir}"],
        tmp_path,
        marker,
    )
    assert stopped.returncode == INTERRUPTED_EXIT_CODE, stopped.stderr[-3000:]
    assert json.loads((sweep_dir / "0" / "status.json").read_text())["status"] == "interrupted"
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["status"] == "interrupted"
    assert not (sweep_dir / "1").exists(), "the next cell must not start after the signal"

    command = _resume_command(stopped.stderr)
    assert "sweep.resume=true" in command and f"hydra.sweep.dir={sweep_dir}" in command
    resumed = _run(command, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for cell in ("0", "1"):
        assert json.loads((sweep_dir / cell / "status.json").read_text())["status"] == "completed"
    assert json.loads((sweep_dir / "sweep.json").read_text())["status"] == "completed"
    _assert_same_results(sweep_dir / "0", tmp_path / "unbroken")


def test_under_submitit_the_signal_saves_then_hands_over_to_its_requeue(
    tiny_dataset, compose_cfg, monkeypatch
):
    """submitit's own preemption signal (USR2): the step checkpoint first, then submitit's
    handler (which requeues the job), called once the interruption is recorded."""
    from lightning.pytorch.callbacks import Callback

    from mbv3_lightning.runs.resume import plan_resume
    from mbv3_lightning.runs.status import RunInterrupted, RunStatus
    from mbv3_lightning.training import run as run_module
    from mbv3_lightning.training.run import run

    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    requeued: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: requeued.append(signum))

    class Preempt(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 1 and batch_idx == 1:
                os.kill(os.getpid(), signal.SIGUSR2)

    original = run_module.build_components

    def with_preemption(cfg):
        datamodule, model, callbacks, loggers = original(cfg)
        return datamodule, model, [*callbacks, Preempt()], loggers

    monkeypatch.setattr(run_module, "build_components", with_preemption)
    cfg = compose_cfg([*_overrides(tiny_dataset), "trainer.max_epochs=2"])
    out = Path(cfg.paths.output_dir)
    status = RunStatus(out, job=0, overrides=["seed=42"])
    try:
        with pytest.raises(RunInterrupted) as stop:
            run(cfg, status)
        assert stop.value.signal_name == "SIGUSR2" and requeued == []
        assert stop.value.ckpt_path == out / "checkpoints" / "last.ckpt"
        assert torch.load(stop.value.ckpt_path, weights_only=True)["epoch"] == 1
        stop.value.requeue()
        assert requeued == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
    # the requeued job runs the cell again without sweep.resume: it continues the checkpoint
    assert json.loads((out / "status.json").read_text())["status"] == "interrupted"
    plan = plan_resume(out, resume=False)
    assert (plan.action, plan.ckpt_path) == ("resume", out / "checkpoints" / "last.ckpt")
