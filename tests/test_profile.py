"""`mbv3 profile`: the real CLI, single run and a multirun table."""

from __future__ import annotations

import csv
import json
import subprocess

import pytest
import torch

from mbv3_lightning.models.complexity import LAYER_KINDS
from mbv3_lightning.perf.profile import cpu_latency_ms

from .conftest import run_module


def _profile(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    return run_module("mbv3_lightning.cli.profile", *overrides, cwd=tmp_path, timeout=600)


@pytest.mark.slow
def test_multirun_profiles_every_model_into_one_table(tmp_path):
    sweep = tmp_path / "sweep"
    result = _profile(
        tmp_path,
        "-m",
        "model=mobilenet_v3_small,mobilenet_v1",
        "model.input_size=64",
        "profile.threads=1",
        "profile.warmup=2",
        f"hydra.sweep.dir={sweep}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(sweep / "profile.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["model"] for r in rows] == ["mobilenet_v3_small", "mobilenet_v1"]
    small, v1 = rows
    assert small["params M"] == "2.543" and v1["params M"] == "4.232"  # 1000-class heads
    assert small["trainable M"] == small["params M"]
    for row in rows:
        # both columns are rounded to 0.1 M in the table
        assert float(row["FLOPs M (2xMACs)"]) == pytest.approx(2 * float(row["MACs M"]), abs=0.11)
        assert float(row["p95 ms"]) >= float(row["median ms"]) > 0
        assert row["threads"] == "1" and row["px"] == "64"
        # fp32 weights: 4 bytes per parameter (+ BatchNorm buffers and pickle overhead)
        assert 4 * float(row["params M"]) < float(row["size MB"]) < 4.2 * float(row["params M"])
    assert "mobilenet_v1" in (sweep / "profile.md").read_text()
    job = json.loads((sweep / "1" / "profile.json").read_text())
    assert job["runs"] == 50 and job["macs"] * 2 == job["flops"]


@pytest.mark.slow
def test_per_layer_breakdown_and_freeze_in_a_single_run(tmp_path):
    out = tmp_path / "run"
    result = _profile(
        tmp_path,
        "model=mobilenet_v1",
        "model.input_size=64",
        "model.freeze=last_layer",
        "profile.per_layer=true",
        "profile.runs=5",
        "profile.warmup=0",
        f"hydra.run.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads((out / "profile.json").read_text())
    assert row["input_size"] == 64
    assert row["params_trainable"] == 1024 * 1000 + 1000  # only the (1000-class) head
    with open(out / "profile_per_layer.csv") as f:
        split = {r["layer kind"]: r for r in csv.DictReader(f)}
    assert tuple(split) == LAYER_KINDS
    assert sum(float(r["MACs %"]) for r in split.values()) == pytest.approx(100, abs=0.02)
    # Resolution moves MACs, not parameters: 1x1 convolutions still hold ~75% of them.
    assert float(split["pointwise conv (1x1)"]["params %"]) == pytest.approx(74.6, abs=0.1)
    assert "pointwise conv (1x1)" in result.stdout


def test_latency_needs_at_least_two_timed_runs():
    with pytest.raises(ValueError, match=r"profile\.runs must be >= 2"):
        cpu_latency_ms(torch.nn.Identity(), 8, warmup=0, runs=1)
