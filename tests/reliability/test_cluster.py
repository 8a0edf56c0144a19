"""What a shared cluster does to runs every day: full disks, two writers on one run or sweep,
a resume with the wrong model or data, commands pointed at a finished run, read-only
folders, out-of-range settings and files that change under a running job."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from mbv3_lightning.cli.config import compose_config
from mbv3_lightning.cli.config_check import ConfigError, check_config
from mbv3_lightning.data.images import UnreadableImageError
from mbv3_lightning.data.split_manifest import SplitManifestError
from mbv3_lightning.deploy.export import export
from mbv3_lightning.runs.lock import RunLockedError, run_lock
from mbv3_lightning.runs.resume import ResumeMismatchError
from mbv3_lightning.runs.run_dir import RunFileWriteError
from mbv3_lightning.sweeps.report import write_report
from mbv3_lightning.training import run as run_module
from mbv3_lightning.training.run import run
from tests.conftest import FAST_OVERRIDES, make_image_folder, write_image

REPO_ROOT = str(Path(__file__).resolve().parents[2])


def _args(root: Path, *extra: str) -> list[str]:
    return [
        "dataset=image_folder",
        f"dataset.root={root}",
        *FAST_OVERRIDES,
        "model.input_size=32",
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        *extra,
    ]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(args: list[str], cwd: Path, module: str = "mbv3_lightning") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
    )


# ------------------------------------------------------------------ a full disk (case 3)
@pytest.fixture
def small_disk(tmp_path: Path, trained_checkpoint: Path):
    """A tmpfs holding two of this network's checkpoints but not a third."""
    mount = tmp_path / "small_disk"
    mount.mkdir()
    size = trained_checkpoint.stat().st_size
    # best.ckpt and last.ckpt fit, with room for the logs; the next checkpoint's temporary
    # file does not
    megabytes = (2.4 * size) // 2**20 + 1
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={int(megabytes)}m", "tmpfs", str(mount)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_filling_during_a_checkpoint_keeps_the_last_good_one(small_disk, tmp_path):
    root = make_image_folder(tmp_path / "data", splits={"train": 16, "test": 4})
    out = small_disk / "run"
    cfg = compose_config(
        "train", _args(root, "trainer.max_epochs=4"), hydra_runtime=True, output_dir=out
    )
    with pytest.raises(RunFileWriteError) as error:
        run(cfg)
    message = str(error.value)
    assert str(out / "checkpoints") in message and "MiB free" in message
    assert "No space left on device" in message
    checkpoints = out / "checkpoints"
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".tmp-")]
    # what is there under a final name is complete and loads: the previous epoch's
    for name in ("last.ckpt", "best.ckpt"):
        if (checkpoints / name).exists():
            assert torch.load(checkpoints / name, weights_only=True)["epoch"] >= 0
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 0
    # status.json says "failed" if the full disk let it be written, else it still says running
    assert json.loads((out / "status.json").read_text())["status"] in ("failed", "running")


def test_a_failed_write_names_the_file_and_leaves_the_old_one(tmp_path):
    """A file-size limit (``ulimit -f``) in a process of its own, on the real writer."""
    target = tmp_path / "metrics.json"
    target.write_text("previous")
    script = (
        "import resource, sys; from pathlib import Path;"
        "from mbv3_lightning.runs.run_dir import write_atomic;"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096));"
        f"write_atomic(Path({str(target)!r}), 'x' * 100000)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
    )
    assert done.returncode != 0
    assert f"Could not write '{target}'" in done.stderr and "File too large" in done.stderr
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# ------------------------------------------------------------------ two writers (case 4)
def test_a_second_writer_is_refused_with_the_holders_pid(tiny_dataset, compose_cfg, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from mbv3_lightning.runs.lock import run_lock\n"
            f"with run_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} on host"):
            run(compose_cfg(_args(tiny_dataset), output_dir=out))
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing else written
        # the command line says the same in one line, exit status 1
        result = _cli([*_args(tiny_dataset), f"hydra.run.dir={out}"], tmp_path)
        assert result.returncode == 1, result.stderr[-2000:]
        assert f"is being written by pid {holder.pid}" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait()
    with run_lock(out):  # released when its holder died
        pass


@pytest.mark.slow
def test_two_resuming_processes_share_a_sweep_and_run_each_cell_once(tmp_path):
    root = make_image_folder(tmp_path / "data", splits={"train": 12, "test": 4})
    sweep = tmp_path / "sweep"
    args = ["-m", *_args(root), "seed=1,2,3,4", "sweep.resume=true", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "PYTHONPATH": REPO_ROOT}
    command = [sys.executable, "-m", "mbv3_lightning", *args]
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    second = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    errors = [first.communicate(timeout=1800)[1], second.communicate(timeout=1800)[1]]
    ends = [
        e[e.find("cells did not complete") - 200 :] if "did not" in e else e[-1500:] for e in errors
    ]
    assert first.returncode == 0 and second.returncode == 0, ends
    pids = set()
    for cell in ("0", "1", "2", "3"):
        status = json.loads((sweep / cell / "status.json").read_text())
        # trained once: a process that came to a cell the other had finished skipped it
        attempts = [status, *status.get("history", [])]
        trained = [a for a in attempts if a["status"] == "completed"]
        assert len(trained) == 1 and status["status"] in ("completed", "skipped"), status
        pids.add(trained[0]["pid"])
        rows = (sweep / cell / "metrics.csv").read_text().splitlines()
        epochs = [row.split(",")[0] for row in rows[1:] if row.split(",")[0]]
        val_rows = [r for r in rows[1:] if r.split(",")[0] and "val" in rows[0]]
        assert epochs.count("0") == epochs.count("1") >= 2, rows  # each epoch's rows once
        assert len(val_rows) == len(epochs)
        assert json.loads((sweep / cell / "metrics.json").read_text())["epochs"] == 2
    assert {first.pid, second.pid} <= pids, "both processes trained cells"
    assert json.loads((sweep / "sweep.json").read_text())["status"] == "completed"


# ------------------------------------------------------------------ resume checks (case 5)
@pytest.fixture
def interrupted_run(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A 1-epoch run folder without metrics.json (as if killed after epoch 1), its data and
    overrides: resuming it with trainer.max_epochs=2 continues it."""
    root = make_image_folder(tmp_path / "data", splits={"train": 10, "test": 4})
    args = _args(root, "trainer.max_epochs=1")
    out = tmp_path / "run"
    run(compose_config("train", args, hydra_runtime=True, output_dir=out))
    (out / "metrics.json").unlink()
    return out, root, _args(root)


def _resume(out: Path, args: list[str]):
    cfg = compose_config(
        "train",
        [*args, f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}"],
        hydra_runtime=True,
        output_dir=out,
    )
    return run(cfg)


def test_resuming_with_another_model_is_refused_before_anything_is_written(interrupted_run):
    out, _, args = interrupted_run
    before = {p: _digest(p) for p in (out / ".hydra" / "config.yaml", out / "hparams.yaml")}
    with pytest.raises(ResumeMismatchError) as error:
        _resume(out, [*args, "model=mobilenet_v3_large"])
    assert (
        "model.net.arch: 'mobilenet_v3_small' in the checkpoint, now 'mobilenet_v3_large'"
        in str(error.value)
    )
    assert {p: _digest(p) for p in before} == before
    assert not (out / "metrics.json").exists()


def test_resuming_on_renamed_classes_of_the_same_count_is_refused(interrupted_run, tmp_path):
    out, root, args = interrupted_run
    renamed = tmp_path / "renamed"
    shutil.copytree(root, renamed)
    for split in ("train", "test"):
        (renamed / split / "cherry").rename(renamed / split / "date")
    with pytest.raises(SplitManifestError, match=r"only in the saved split: \['cherry'\]"):
        _resume(out, [a.replace(str(root), str(renamed)) for a in args])


def test_a_resume_keeps_its_split_and_reports_new_images(interrupted_run, caplog):
    out, root, args = interrupted_run
    saved = json.loads((out / "split_manifest.json").read_text())["splits"]
    for i in range(5):  # images added since the run started
        write_image(root / "train" / "apple" / f"new_{i}.jpg", (220, 40, 40), seed=100 + i)
    record = _resume(out, args)
    assert json.loads((out / "split_manifest.json").read_text())["splits"] == saved
    assert "5 image(s)" in caplog.text and "does not use them" in caplog.text
    assert record.timings.epochs == 2


def test_a_resume_refuses_when_an_image_of_its_split_is_gone(interrupted_run):
    out, root, args = interrupted_run
    gone = next((root / "train" / "banana").iterdir())
    gone.unlink()
    with pytest.raises(SplitManifestError, match="gone from") as error:
        _resume(out, args)
    assert gone.name in str(error.value)


def test_resumed_after_the_last_epoch_the_record_is_as_complete_as_an_unbroken_one(tmp_path):
    root = make_image_folder(tmp_path / "data", splits={"train": 10, "test": 4})
    args = _args(root)
    out = tmp_path / "run"
    unbroken = run(compose_config("train", args, hydra_runtime=True, output_dir=out))
    (out / "metrics.json").unlink()  # killed after the last epoch, before the results
    resumed = _resume(out, args)
    assert resumed.metrics.keys() == unbroken.metrics.keys()
    for key in ("val/acc_best", "val/acc", "train/loss", "test/acc"):
        assert resumed.metrics[key] == pytest.approx(unbroken.metrics[key], abs=1e-6), key
    # the training time of the first attempt, as its last checkpoint recorded it
    assert resumed.timings.train_time_s == pytest.approx(unbroken.timings.train_time_s, rel=0.5)


def test_the_report_marks_a_mean_over_fewer_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    grid = [["seed=1"], ["seed=2"]]
    for job, acc in enumerate((0.9, 0.8)):
        cell = sweep / str(job)
        cell.mkdir(parents=True)
        metrics = {"test/acc": acc, **({"val/acc_best": 0.85} if job == 0 else {})}
        record = {
            "model": "mobilenet_v3_small",
            "dataset": "d",
            "seed": job + 1,
            "metrics": metrics,
        }
        (cell / "metrics.json").write_text(json.dumps(record))
        status = {"job": job, "overrides": grid[job], "status": "completed"}
        (cell / "status.json").write_text(json.dumps(status))
    (sweep / "sweep.json").write_text(json.dumps({"grid": grid, "cells": []}))
    row = write_report(sweep)["tables"]["d"][0]
    assert row[4] == "0.8500 (1 of 2 seeds)"  # best val acc: only seed 1 recorded it
    assert row[5] == "0.8500 ± 0.0707"  # test acc: both


# ------------------------------------------------------------------ read-only commands (case 6)
@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("evaluate", ["ckpt_path={ckpt}"]),
        ("predict", ["ckpt_path={ckpt}", "inputs={data}"]),
        ("check", []),
    ],
)
def test_other_commands_never_write_into_a_finished_run(
    command, extra, trained_checkpoint, tiny_dataset, tmp_path
):
    run_dir = trained_checkpoint.parent.parent
    before = {p: _digest(p) for p in sorted(run_dir.rglob("*")) if p.is_file()}
    args = [e.format(ckpt=trained_checkpoint, data=tiny_dataset / "test") for e in extra]
    result = _cli([command, *args, f"hydra.run.dir={run_dir}"], tmp_path, "mbv3_lightning.cli.main")
    assert result.returncode != 0
    assert "holds a training run" in result.stderr and "Traceback" not in result.stderr
    assert {p: _digest(p) for p in sorted(run_dir.rglob("*")) if p.is_file()} == before


# ------------------------------------------------------------------ the environment (case 7)
@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 is out of range"),
        ("seed=-1", "seed=-1 is out of range"),
        ("seed=99999999999", "seed=99999999999 is out of range"),
        ("dataset.num_workers=-2", "dataset.num_workers=-2 is out of range"),
        ("dataset.batch_size=0", "dataset.batch_size=0 is out of range"),
        ("model.label_smoothing=1", "model.label_smoothing=1 is out of range"),
        ("dataset.scale=[0.9,0.2]", "dataset.scale=[0.9, 0.2]"),
    ],
)
def test_out_of_range_values_are_named_when_composed(override, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        check_config(compose_config("train", [override]))


def test_an_out_of_range_value_stops_the_command_before_a_folder_is_made(tmp_path):
    result = _cli(["optimizer.lr=-1"], tmp_path)
    assert result.returncode != 0 and "optimizer.lr=-1 is out of range" in result.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.fixture
def read_only_folder(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here (needs root): {done.stderr.decode()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_read_only_output_folder_is_one_clear_line(read_only_folder, tmp_path):
    result = _cli([f"hydra.run.dir={read_only_folder / 'run'}"], tmp_path)
    assert result.returncode != 0
    assert f"'{read_only_folder}' is not writable" in result.stderr
    assert "Traceback" not in result.stderr and not list(read_only_folder.iterdir())


class _CorruptImages(Callback):
    """Overwrites a class's training images between two epochs: after the scan checked them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for path in self.folder.iterdir():
            path.write_bytes(b"no longer an image")


def test_an_image_that_changed_after_the_scan_is_named(tiny_dataset, compose_cfg, monkeypatch):
    victims = tiny_dataset / "train" / "apple"
    original = run_module.build_components

    def with_corruption(cfg):
        datamodule, model, callbacks, loggers = original(cfg)
        return datamodule, model, [*callbacks, _CorruptImages(victims)], loggers

    monkeypatch.setattr(run_module, "build_components", with_corruption)
    cfg = compose_cfg(_args(tiny_dataset, "dataset.cache=false", "trainer.max_epochs=3"))
    with pytest.raises(UnreadableImageError) as error:
        run(cfg)
    assert f"Cannot read image '{victims}" in str(error.value)
    assert "changed since" in str(error.value)


def test_an_unreadable_calibration_image_is_named(trained_checkpoint, tmp_path):
    images = tmp_path / "calibration"
    write_image(images / "a" / "good.jpg", (200, 30, 30))
    broken = images / "a" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    cfg = compose_config(
        "export",
        [f"ckpt_path={trained_checkpoint}", "quantize=int8", f"calibration_dir={images}"],
        output_dir=tmp_path / "export",
        output_key="output_dir",
    )
    with pytest.raises(UnreadableImageError, match=str(broken)):
        export(cfg)
