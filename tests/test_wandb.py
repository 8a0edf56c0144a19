"""W&B, offline: what the run files of W&B hold after real runs (identity, summary, plots)."""

from __future__ import annotations

import csv
import json
import struct
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from mbv3_lightning.tracking.logger import WANDB_RUN_ID_KEY
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
    the summary (``summary_values``) and config (``config_values``) and the logged artifacts
    (``artifacts``: type and aliases)."""
    info: dict = {
        "summary": set(),
        "history": set(),
        "summary_values": {},
        "config_values": {},
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
        elif kind == "config":
            info.setdefault("config", set()).update(u.key for u in record.config.update)
            for u in record.config.update:
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
    run(compose_cfg(_overrides(tiny_dataset, "trainer.max_epochs=1"), out))
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
    assert {"train/loss", "val/acc", "val/loss"} <= first["history"]  # per-epoch curves
    # per-epoch per-class scores of train and val as one table per stage (not a chart per
    # class), and train's macro means as curves
    assert {"train/per_class_epochs", "val/per_class_epochs"} <= first["history"]
    assert {"train/f1", "train/specificity"} <= first["history"]
    assert not [key for key in first["history"] if "_class/" in key]
    assert {"figures/confusion_train", "figures/confusion_val"} <= first["history"]
    assert {
        "test/roc_table",  # W&B stores a chart's data as <key>_table
        "test/confusion_matrix_table",
        "test/per_class",
        "figures/curves",
        "figures/roc",
        "figures/confusion",
    } <= first["history"]
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last[WANDB_RUN_ID_KEY] == first["id"]

    # As if killed after the last checkpoint: a finished run (metrics.json) is not resumed in place.
    (out / "metrics.json").unlink()
    resumed_cfg = compose_cfg(
        _overrides(tiny_dataset, "trainer.max_epochs=2", f"ckpt_path={out}/checkpoints/last.ckpt"),
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


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


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

    # the config is the Hydra config alone, with no machine path in it
    config = info["config_values"]
    assert config["model"]["net"]["arch"] == "mobilenet_v3_small"
    assert "input_size" not in config and "net" not in config  # no module hparams on top
    assert not [s for s in _strings(config) if s.startswith("/")]
    assert config["paths"]["output_dir"] == "."
