"""What a user sees on the console: the README demo through its own entry point, shortened."""

from __future__ import annotations

import os
import subprocess
import sys

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from mbv3_lightning.training.console import CompactProgressBar, silence_library_noise

from .conftest import FAST_OVERRIDES, REPO_ROOT

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


class _LogsWhatTheDemoLogs(L.LightningModule):
    """Logs the four bar metrics with values as long as the demo's (0.0348 has four digits)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).sum() * 0 + 0.121
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", 0.925, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", 0.0348, prog_bar=True)
        self.log("val/acc", 0.983, prog_bar=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_the_bar_of_a_two_digit_epoch_fits_80_columns(monkeypatch, capsys):
    """The demo's last epoch ("Epoch 11/11", 17/17 batches) put val_acc's value on a second
    line: Rich wrapped the metrics before it narrowed the bar."""
    monkeypatch.setenv("COLUMNS", "80")
    silence_library_noise()  # as the training command does
    batches = DataLoader(TensorDataset(torch.zeros(17, 2)), batch_size=1)
    trainer = L.Trainer(
        max_epochs=12,
        callbacks=[CompactProgressBar()],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=1,
    )
    trainer.fit(_LogsWhatTheDemoLogs(), batches, batches)
    lines = capsys.readouterr().out.splitlines()
    (last_epoch,) = [line for line in lines if line.startswith("Epoch 11/11")]
    assert last_epoch.rstrip().endswith(
        " 17/17 loss: 0.121 acc: 0.925 val_loss: 0.0348 val_acc: 0.983"
    )
    assert max(len(line) for line in lines) <= 80


@pytest.mark.parametrize("bar", [pytest.param("default", marks=pytest.mark.slow), "null"])
def test_no_progress_bar_callback_means_no_bar(bar, compose_cfg, tiny_dataset, capsys):
    """Sweeps and studies set `callbacks.progress_bar=null` for a quiet log; Lightning then
    added its default bar, with every metric on it, wrapped over many lines."""
    from mbv3_lightning.training.run import run

    fast = [o for o in FAST_OVERRIDES if not o.startswith("callbacks.progress_bar")]
    overrides = ["dataset=image_folder", f"dataset.root={tiny_dataset}", *fast]
    if bar == "null":
        overrides.append("callbacks.progress_bar=null")
    run(compose_cfg([*overrides, "model.input_size=32", "trainer.max_epochs=1"]))
    console = capsys.readouterr().out
    assert ("Epoch " in console) == (bar == "default")
    assert "auroc" not in console
