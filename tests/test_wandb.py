"""W&B, offline: what the run files of W&B hold after real runs (identity, summary, plots)."""

from __future__ import annotations

import csv
import json
import os
import struct
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from mbv3_lightning.tracking.logger import WANDB_RUN_ID_KEY
from mbv3_lightning.tracking.run_config import absolute_paths
from mbv3_lightning.training.run import run

from .conftest import FAST_OVERRIDES, make_image_folder, run_module

_BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log of 32 KiB blocks
_FULL, _LAST = 1, 4


def read_wandb_records(path: Path) -> list:
    """Every record of an offline ``run-<id>.wandb`` file, as W&B's protobuf messages.

    (wandb >= 0.19 no longer ships a Python reader for its own log format.)
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B log"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < 7:  # too small for a record header: zero padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left_in_block
            continue
        if pos + 7 + length > len(data):
            break  # the writer is mid-record
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def finished_records(run_dir: Path, wait_s: float = 120.0) -> list:
    """The records of a finished offline run. W&B's service process writes the file after
    ``wandb.finish()`` returns, so wait for the final ``exit`` record."""
    (log_file,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + wait_s
    while True:
        records = read_wandb_records(log_file)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        assert time.monotonic() < deadline, f"{log_file} has no exit record: run not finished"
        time.sleep(0.5)


def offline_run(run_dir: Path) -> dict:
    """Identity, summary keys and logged keys of an offline run directory; with the values of
    the summary (``summary_values``) and config (``config_values``), the files of the logged
    media (``history_files``: key -> path, e.g. a table's JSON) and the logged artifacts
    (``artifacts``: type and aliases)."""
    info: dict = {
        "summary": set(),
        "history": set(),
        "summary_values": {},
        "config_values": {},
        "history_files": {},
        "artifacts": [],
    }
    for record in finished_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info.update(
                id=record.run.run_id,
                group=record.run.run_group,
                name=record.run.display_name,
                job_type=record.run.job_type,
                tags=list(record.run.tags),
                config={u.key for u in record.run.config.update},
            )
        elif kind == "summary":
            # media are nested (figures/roc -> path, size, ...); keep the logged name only
            info["summary"] |= {u.key or u.nested_key[0] for u in record.summary.update}
            for u in record.summary.update:  # define_metric summaries: nested_key [name]
                info["summary_values"][u.key or u.nested_key[0]] = json.loads(u.value_json)
        elif kind == "history":
            info["history"] |= {i.key or i.nested_key[0] for i in record.history.item}
            for i in record.history.item:  # media are nested: [key, "path"] -> its file
                if list(i.nested_key[1:]) == ["path"]:
                    path = run_dir / "files" / json.loads(i.value_json)
                    info["history_files"][i.nested_key[0]] = path
        elif kind == "config":
            # W&B's own chart settings come as nested updates (_wandb.visualize...): left out
            updates = [u for u in record.config.update if u.key]
            info.setdefault("config", set()).update(u.key for u in updates)
            for u in updates:
                info["config_values"][u.key] = json.loads(u.value_json)
        elif kind == "artifact":
            artifact = record.artifact
            info["artifacts"].append((artifact.type, sorted(artifact.aliases)))
            # where an offline run keeps the artifact's files until `wandb sync`
            info.setdefault("artifact_files", {}).update(
                {c.path: Path(c.local_path) for c in artifact.manifest.contents}
            )
    return info


def _overrides(root: Path, *extra: str) -> list[str]:
    return [
        "dataset=image_folder",
        f"dataset.root={root}",
        *FAST_OVERRIDES,
        "debug=limit",
        "model.input_size=32",
        "logger=wandb",
        "+timing.repeats=5",
        *extra,
    ]


def test_run_logs_its_results_and_a_resume_continues_the_same_wandb_run(
    compose_cfg, tiny_dataset, tmp_path
):
    out = tmp_path / "run"
    # per-class scalars on request, besides the per-epoch tables
    per_class = "logger.wandb.per_class_scalars=true"
    run(compose_cfg(_overrides(tiny_dataset, "trainer.max_epochs=1", per_class), out))
    (first_dir,) = (out / "wandb").glob("offline-run-*")
    first = offline_run(first_dir)
    assert first["name"] == "mobilenet_v3_small-image_folder-s42"
    assert first["group"] == "train"  # a single run outside a sweep: the task name
    assert first["job_type"] == "train"  # the stage; evaluate and report runs say theirs
    assert first["tags"] == ["dev"]
    assert {"model", "dataset", "optimizer", "trainer"} <= first["config"]  # the Hydra config
    assert {
        "test/acc",
        "test/auroc",
        "test/f1",
        "val/acc_best",
        "best_epoch",
        "params",
        "macs",
        "test_ms_per_image/median",
        "test_images_per_s",
    } <= first["summary"]
    assert {"train/loss", "train/f1", "val/acc", "val/loss"} <= first["history"]  # curves
    # per-epoch per-class scores of train and val as scalars (per_class_scalars=true) and as
    # tables; train's macro means beside val's
    assert {
        f"{stage}_class/{name}/{metric}"
        for stage in ("train", "val")
        for name in ("apple", "banana", "cherry")
        for metric in ("precision", "recall", "specificity", "f1")
    } | {"train/per_class_epochs", "val/per_class_epochs"} <= first["history"]
    assert {"train/specificity", "val/specificity"} <= first["summary"]
    assert {"figures/confusion_train", "figures/confusion_val"} <= first["history"]
    assert {
        "test/roc_table",  # W&B stores a chart's data as <key>_table
        "test/confusion_matrix_table",
        "test/per_class",
        "figures/roc",
        "figures/confusion",
    } <= first["history"]
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last[WANDB_RUN_ID_KEY] == first["id"]

    # As if killed after the last checkpoint: a finished run (metrics.json) is not resumed in place.
    (out / "metrics.json").unlink()
    resumed_cfg = compose_cfg(
        _overrides(
            tiny_dataset,
            "trainer.max_epochs=2",
            f"ckpt_path={out}/checkpoints/last.ckpt",
            per_class,
        ),
        out,
    )
    assert run(resumed_cfg).timings.epochs == 2
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2  # offline, each attempt writes its own log of the same run
    assert {offline_run(d)["id"] for d in runs} == {first["id"]}


@pytest.mark.slow
def test_multirun_jobs_are_separate_wandb_runs_in_one_group(tmp_path):
    root = make_image_folder(tmp_path / "data", classes=("x", "y"), splits={"train": 6, "test": 2})
    sweep_dir = tmp_path / "sweep"
    result = run_module(
        "mbv3_lightning",
        "-m",
        "seed=1,2",
        *_overrides(root, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep_dir}"),
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = [offline_run(d) for d in sorted(sweep_dir.glob("*/wandb/offline-run-*"))]
    assert len(runs) == 2
    assert runs[0]["id"] != runs[1]["id"]
    assert {r["name"] for r in runs} == {
        "mobilenet_v3_small-image_folder-s1",
        "mobilenet_v3_small-image_folder-s2",
    }
    group = f"train-{sweep_dir.parent.name}-{sweep_dir.name}"
    assert [r["group"] for r in runs] == [group, group]


def _strings(value, key: str = "") -> list[tuple[str, str]]:
    """Every string of a config, with the key it sits under."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, key)]
    return [(key, value)] if isinstance(value, str) else []


# What the history of a run holds with logger=wandb's defaults, besides W&B's own _step,
# _runtime, _timestamp and Lightning's epoch and trainer/global_step: the curves people
# compare, the learning rate, and the media logged once the run is scored.
DASHBOARD_HISTORY = {
    *(f"{stage}/{score}" for stage in ("train", "val") for score in ("loss", "acc", "auroc", "f1")),
    "lr-AdamW",
    "train/per_class_epochs",
    "val/per_class_epochs",
    "test/per_class",
    "test/predictions",
    "test/roc_table",
    "test/confusion_matrix_table",
    "figures/roc",
    "figures/confusion",
    "figures/confusion_train",
    "figures/confusion_val",
}


def test_wandb_run_reads_as_a_dashboard(compose_cfg, tmp_path, monkeypatch):
    """The demo's training at tiny size (six classes, as the demo has more than five: top-5
    accuracy is logged) with logger=wandb: absolute paths and the data's counts in the config,
    a short history, per-class scores as tables."""
    classes = ("apple", "banana", "cherry", "grape", "kiwi", "lemon")
    make_image_folder(tmp_path / "tiny", classes=classes, splits={"train": 5, "test": 2})
    monkeypatch.chdir(tmp_path)  # a relative dataset.root, as a user types it
    out = tmp_path / "run"
    run(compose_cfg(_overrides(Path("tiny"), "trainer.max_epochs=1"), out))
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    info = offline_run(run_dir)
    config = info["config_values"]

    # every path absolute: the relative root the user typed, the data and run folders
    assert config["dataset"]["root"] == str(tmp_path / "tiny")
    assert config["paths"] == {"data_dir": str(tmp_path / "data"), "output_dir": str(out)}
    assert config["callbacks"]["model_checkpoint"]["dirpath"] == str(out / "checkpoints")
    strings = _strings(config)
    assert not [(k, s) for k, s in strings if k.endswith(("root", "dir", "path")) and s[:1] != "/"]
    assert not [(k, s) for k, s in strings if os.path.exists(s) and not os.path.isabs(s)]

    # the dataset's name and image counts, as the run split it (split_manifest.json)
    splits = json.loads((out / "split_manifest.json").read_text())["splits"]
    assert config["data"] == {
        "name": "image_folder",
        "num_classes": 6,
        "train_images": len(splits["train"]),
        "val_images": len(splits["val"]),
        "test_images": 12,
    }
    assert len(splits["train"]) + len(splits["val"]) == 30

    # the history: the curves people compare, no per-class scalars; the rest in the summary
    assert len(info["history"]) <= 25, sorted(info["history"])
    assert info["history"] - {
        "_step",
        "_runtime",
        "_timestamp",
        "epoch",
        "trainer/global_step",
    } == (DASHBOARD_HISTORY)
    assert {"val/acc_top5", "val/precision", "val/acc_best", "train/recall"} <= info["summary"]

    # per-class scores: one table per stage, a row per class and epoch
    for stage in ("train", "val"):
        table = json.loads(info["history_files"][f"{stage}/per_class_epochs"].read_text())
        assert table["columns"][:6] == [
            "epoch",
            "class",
            "precision",
            "recall",
            "specificity",
            "f1",
        ]
        assert [row[1] for row in table["data"]] == list(classes)
        assert all(0.0 <= value <= 1.0 for row in table["data"] for value in row[2:6])


def test_dashboard_best_summaries_test_scores_predictions_and_model_artifact(
    compose_cfg, tiny_dataset, tmp_path
):
    out = tmp_path / "run"
    run(
        compose_cfg(
            _overrides(tiny_dataset, "trainer.max_epochs=3", "logger.wandb.log_model=true"), out
        )
    )
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    info = offline_run(run_dir)
    summary = info["summary_values"]

    # the summary of a curve is its best epoch, not its last
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    val_acc = [float(r["val/acc"]) for r in rows if r.get("val/acc")]
    val_loss = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(val_acc) == 3
    assert summary["val/acc"]["max"] == pytest.approx(max(val_acc))
    assert summary["val/loss"]["min"] == pytest.approx(min(val_loss))
    # scores kept out of the history: their summary is their best epoch too
    val_precision = [float(r["val/precision"]) for r in rows if r.get("val/precision")]
    assert "val/precision" not in info["history"]
    assert summary["val/precision"] == pytest.approx(max(val_precision))
    assert summary["val/acc_best"] == pytest.approx(max(val_acc))

    # test scores: summary values, no one-point charts
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert summary["test/acc"] == pytest.approx(metrics["test/acc"])
    assert 0.0 <= summary["test/precision"] <= 1.0 and 0.0 <= summary["test/f1"] <= 1.0
    assert not {k for k in info["history"] if k.startswith("test/") and k in metrics}
    assert "test/predictions" in info["history"]

    # the predictions table (W&B keeps a table with images in a run_table artifact): a
    # thumbnail, true and predicted class, confidence per image
    files = info["artifact_files"]
    table = json.loads(files["test/predictions.table.json"].read_text())
    assert table["columns"][:4] == ["image", "label", "predicted", "confidence"]
    assert len(table["data"]) == 3 * 4  # every test image of the tiny set (3 classes x 4)
    assert {row[1] for row in table["data"]} == {"apple", "banana", "cherry"}
    assert all(row[0]["_type"] == "image-file" for row in table["data"])
    with Image.open(files[table["data"][0][0]["path"]]) as thumbnail:
        assert thumbnail.size == (32, 32)  # the image as the model saw it
    assert all(0.0 < row[3] <= 1.0 for row in table["data"])

    # the best checkpoint as a model artifact, best and latest
    assert ("model", ["best", "latest"]) in info["artifacts"]

    # the config is the Hydra config (and the data section), no module hparams on top
    config = info["config_values"]
    assert config["model"]["net"]["arch"] == "mobilenet_v3_small"
    assert "input_size" not in config and "net" not in config


def test_config_paths_are_made_absolute_and_other_strings_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {
        "ckpt_path": "outputs/run/checkpoints/last.ckpt",
        "dataset": {"root": "../photos", "name": "photos", "classes": ["a/b"]},
        "callbacks": {"best": {"dirpath": "/abs/checkpoints", "monitor": "val/acc"}},
        "inputs_path": ["a.jpg", "/b.jpg"],
        "logger": {"csv": {"save_dir": "", "name": ""}},
        "model": {"net": {"weights_path": None}},
    }
    assert absolute_paths(config) == {
        "ckpt_path": str(tmp_path / "outputs/run/checkpoints/last.ckpt"),
        "dataset": {"root": str(tmp_path.parent / "photos"), "name": "photos", "classes": ["a/b"]},
        "callbacks": {"best": {"dirpath": "/abs/checkpoints", "monitor": "val/acc"}},
        "inputs_path": [str(tmp_path / "a.jpg"), "/b.jpg"],
        "logger": {"csv": {"save_dir": "", "name": ""}},
        "model": {"net": {"weights_path": None}},
    }
