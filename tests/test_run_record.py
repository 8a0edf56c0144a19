"""RunRecord: metrics.json keeps its keys, round-trips, and old files (no schema_version) read
back; RunDir names every file of a run directory and writes them atomically."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from mbv3_lightning.runs.record import SCHEMA_VERSION, RunRecord, build_run_record
from mbv3_lightning.runs.result_table import result_table
from mbv3_lightning.runs.run_dir import RunDir, write_atomic

# A metrics.json as training wrote it before schema_version existed (the demo's keys).
OLD_METRICS_JSON = {
    "model": "mobilenet_v3_small",
    "dataset": "fruits360_mini",
    "seed": 42,
    "input_size": 100,
    "num_classes": 2,
    "class_names": ["apple", "banana"],
    "skipped_images": 0,
    "epochs": 12,
    "metrics": {"val/acc": 0.98, "val/acc_best": 0.99, "test/acc": 1.0, "lr-AdamW": 9e-05},
    "params_total": 1528106,
    "params_trainable": 1528106,
    "train_time_s": 29.53,
    "best_ckpt": "/runs/demo/checkpoints/epoch_007.ckpt",
    "run_dir": "/runs/demo",
    "device": "cpu",
    "torch_threads": 2,
    "versions": {"python": "3.11.7", "torch": "2.4.0"},
    "git_commit": "f2abddb",
    "config": {"seed": 42, "model": {"arch": "mobilenet_v3_small"}},
    "best_epoch": 7,
    "params": 1528106,
    "macs": 15164362,
    "flops": 30328724,
    "test_ms_per_image": {"median": 3.852, "p95": 4.393},
    "test_images_per_s": 1697.9,
    "test_timing_batch_size": 128,
    "per_class": [{"class": "apple", "precision": 1.0, "recall": 1.0, "support": 5}],
    "wall_time_s": 31.14,
}


def test_an_old_metrics_json_reads_back_and_writes_the_same_keys_and_values():
    record = RunRecord.from_json(OLD_METRICS_JSON)
    assert record.model == "mobilenet_v3_small"
    assert record.cost.macs == 15164362
    assert record.timings.best_epoch == 7
    assert record.metrics_by_stage()["test"] == {"acc": 1.0}
    written = record.to_json()
    assert written == {**OLD_METRICS_JSON, "schema_version": SCHEMA_VERSION}
    assert list(written)[:-1] == list(OLD_METRICS_JSON)  # the order too


def test_to_json_from_json_round_trip(tmp_path):
    record = RunRecord.from_json(OLD_METRICS_JSON)
    again = RunRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record
    record.extra["added_later"] = 1  # keys a newer version wrote survive a read and write
    assert RunRecord.from_json(record.to_json()).to_json()["added_later"] == 1


def test_older_layouts_are_upgraded_on_read():
    old = {k: v for k, v in OLD_METRICS_JSON.items() if k not in ("params", "macs", "flops")}
    record = RunRecord.from_json(old)
    assert record.cost.params == OLD_METRICS_JSON["params_total"]


def test_build_run_record_is_what_training_and_evaluation_write(tmp_path):
    record = build_run_record(
        model="m",
        dataset="d",
        seed=1,
        run_dir=tmp_path,
        input_size=32,
        class_names=["a", "b"],
        skipped_images=0,
        epochs=2,
        metrics={"test/acc": 0.5},
        parameter_counts={"params_total": 10, "params_trainable": 8},
        train_time_s=1.234,
        best_ckpt=None,
        device="cpu",
        config={"seed": 1},
        best_epoch=1,
        cost={
            "params": 10,
            "macs": 5,
            "flops": 10,
            "test_ms_per_image": None,
            "test_images_per_s": None,
        },
        per_class=[],
        started=0.0,
    )
    data = record.to_json()
    assert data["train_time_s"] == 1.23
    assert data["num_classes"] == 2
    assert data["test_ms_per_image"] is None and "test_timing_batch_size" not in data
    assert set(OLD_METRICS_JSON) - set(data) == {"test_timing_batch_size"}
    console = Console(record=True, width=100)
    console.print(result_table(record))  # the console table reads the record
    text = console.export_text()
    assert re.search(r"train time\s+│ 1\.2 s", text) and re.search(r"classes\s+│ 2", text)
    # a DDP worker that measured nothing writes no cost keys
    record.cost_measured = False
    assert "macs" not in record.to_json()


def test_run_dir_names_every_file_and_reads_the_record(tmp_path):
    run = RunDir(tmp_path)
    assert run.metrics_json == tmp_path / "metrics.json"
    assert run.last_ckpt == tmp_path / "checkpoints" / "last.ckpt"
    assert RunDir.of_checkpoint(run.last_ckpt).path == tmp_path.resolve()
    assert not run.holds_finished_run()
    assert RunRecord.read_if_finished(tmp_path) is None
    write_atomic(run.metrics_json, json.dumps(OLD_METRICS_JSON))
    assert run.holds_finished_run()
    assert RunRecord.read(run).timings.epochs == 12


def test_write_atomic_leaves_nothing_behind_when_the_writer_fails(tmp_path):
    target = tmp_path / "figure.png"
    write_atomic(target, b"first")

    def failing(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, failing)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]
