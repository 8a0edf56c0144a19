"""What a user sees on the console: the README demo through its own entry point, shortened."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT

# Library chatter that used to fill the demo's console, none of it about the user's run.
NOISE = [
    "Experiment logs directory",  # Lightning's CSV logger, a false alarm (the CSV is kept)
    "litlogger",  # Lightning's advertisement for its cloud logger
    "LeafSpec",  # a torch deprecation inside Lightning
    "anonymous setting has no effect",  # W&B, about an argument Lightning passes
    "Total FLOPs: 0",  # Lightning's model summary (the run's summary has the MACs)
    "Test metric",  # Lightning's test table of raw float32 values (1.0000001192092896)
    "DataLoader 0",
    "v_num",
    "GPU available",
]


@pytest.mark.slow
def test_demo_console_is_the_progress_bar_and_the_summary(tmp_path):
    env = {**os.environ, "COLUMNS": "80", "WANDB_MODE": "offline"}
    env.pop("WANDB_SILENT", None)  # W&B's own warnings must not be hidden here
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mbv3_lightning",
            # the demo's defaults (model, dataset, progress bar, loggers), shortened
            "debug=limit",
            "trainer.log_every_n_steps=1",
            "logger=wandb",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    console = result.stdout + result.stderr
    assert not [line for line in console.splitlines() if any(n in line for n in NOISE)]
    # W&B says where its offline files are; nothing else may reach stderr
    assert not [line for line in result.stderr.splitlines() if not line.startswith("wandb:")]
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    # one line per bar: epoch, batches, loss and accuracy of train and val together
    (epoch,) = {line for line in lines if line.startswith("Epoch 1/1")}
    assert all(f" {name}: " in epoch for name in ("loss", "acc", "val_loss", "val_acc"))
    assert "test accuracy" in result.stdout and "MACs" in result.stdout  # the final summary
    # the INFO lines are in the run's log, not on the console
    log = (tmp_path / "run" / "train.log").read_text()
    assert "Dataset 'fruits360_mini': 10 classes" in log
    assert "Dataset 'fruits360_mini'" not in result.stdout
