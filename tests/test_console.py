"""What a user sees on the console: the README demo through its own entry point, shortened,
the progress bar, the summary, and the serving commands' output."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import lightning as L
import pytest
import torch
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from mbv3_lightning.runs.record import RunRecord
from mbv3_lightning.runs.result_table import result_table
from mbv3_lightning.training.console import CompactProgressBar, silence_library_noise

from .conftest import FAST_OVERRIDES, REPO_ROOT, log_lines, run_module

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
    # the last of debug=limit's 2 epochs, counted from 1: batches, elapsed<left, speed, the
    # training scores, and the validation scores on the line below
    (at,) = [i for i, line in enumerate(lines) if line.startswith("Epoch 2/2 ")]
    assert re.search(r" (\d+)/\1 \d+:\d\d<\d+:\d\d [\d.]+ img/s loss: \S+ acc: \S+", lines[at])
    assert re.search(r"^ +val_loss: \S+ val_acc: \S+", lines[at + 1])
    assert not log_lines(result.stdout)
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


def test_the_bar_shows_times_speed_and_epochs_from_1_within_80_columns(monkeypatch, capsys):
    """The demo's last epoch ("Epoch 12/12", 17 batches): elapsed and time left, images per
    second, and the four scores, within 80 columns (Rich once wrapped val_acc's value onto a
    line of its own)."""
    monkeypatch.setenv("COLUMNS", "80")
    silence_library_noise()  # as the training command does
    batches = DataLoader(TensorDataset(torch.zeros(17 * 4, 2)), batch_size=4)
    bar = CompactProgressBar()
    trainer = L.Trainer(
        max_epochs=12,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=1,
    )
    trainer.fit(_LogsWhatTheDemoLogs(), batches, batches)
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    (at,) = [i for i, line in enumerate(lines) if line.startswith("Epoch 12/12")]
    shown = re.search(
        r" 17/17 (\d+):(\d\d)<0:00 (\d+) img/s loss: 0.121 acc: 0.925$", lines[at].rstrip()
    )
    assert shown, lines[at]
    assert lines[at + 1].strip() == "val_loss: 0.0348 val_acc: 0.983"
    # The speed counts the last epoch's 68 images, not every epoch's, over its own time.
    (epoch_task,) = [t for t in bar.progress.tasks if t.description.startswith("Epoch")]
    assert epoch_task.fields["images"] == 17 * 4
    assert int(shown.group(3)) == round(68 / epoch_task.finished_time)
    assert int(shown.group(1)) * 60 + int(shown.group(2)) == round(epoch_task.finished_time)


def test_the_summary_counts_the_best_epoch_from_1(trained_checkpoint):
    """metrics.json keeps Lightning's 0-based best_epoch; the printed summary counts from 1."""
    record = RunRecord.read(trained_checkpoint.parents[1])
    console = Console(record=True, width=100)
    console.print(result_table(record))
    shown = re.search(r"epochs\s+│ 6 \(best: (\d)\)", console.export_text())
    assert shown and int(shown.group(1)) == record.timings.best_epoch + 1


@pytest.mark.slow
def test_review_and_export_print_their_summary_and_no_log_lines(trained_checkpoint, tmp_path):
    """Like training, the serving commands keep their log lines in their log file (the fast
    suite checks this on `evaluate` and `predict`, which share the logging set-up)."""
    root = RunRecord.read(trained_checkpoint.parents[1]).config["dataset"]["root"]
    review = run_module(
        "mbv3_lightning.cli.review",
        f"ckpt_path={trained_checkpoint}",
        "dataset=image_folder",
        f"dataset.root={root}",
        "split=test",
        f"hydra.run.dir={tmp_path / 'review'}",
        cwd=tmp_path,
    )
    assert review.returncode == 0, review.stderr[-3000:]
    assert "Reviewed 12 test images" in review.stdout
    assert not log_lines(review.stdout + review.stderr)
    assert "Seed set to 42" not in review.stdout + review.stderr
    assert "Seed set to 42" in (tmp_path / "review" / "review.log").read_text()

    export = run_module(
        "mbv3_lightning.cli.export",
        f"ckpt_path={trained_checkpoint}",
        "format=torchscript",
        "latency_runs=2",
        f"hydra.run.dir={tmp_path / 'export'}",
        cwd=tmp_path,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    assert f"Exported {tmp_path / 'export' / 'mobilenet_v3_small.pt'}" in export.stdout
    assert not log_lines(export.stdout + export.stderr)


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
