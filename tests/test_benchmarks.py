"""The benchmark harness: fair ordering of variants, the results table, the operator profile,
the per-step framework tax."""

from __future__ import annotations

import pytest
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar

from benchmarks.memory_format import OP_CATEGORIES, op_breakdown
from benchmarks.run import to_markdown
from benchmarks.step_tax import GOAL_MS, TrivialNet, project_trainer, run
from benchmarks.timing import interleaved
from mbv3_lightning.training.callbacks import NonFiniteLossGuard, RngStateCheckpoint
from mbv3_lightning.training.loggers import ResumableCSVLogger
from mbv3_lightning.training.module import ImageClassifier


def test_interleaved_alternates_which_variant_runs_first():
    calls: list[str] = []

    def variant(name: str, seconds: float):
        def call() -> float:
            calls.append(name)
            return seconds

        return call

    times = interleaved({"a": variant("a", 1.0), "b": variant("b", 2.0)}, repeats=4)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert times == {"a": [1.0] * 4, "b": [2.0] * 4}


def test_markdown_has_every_column_of_every_row_and_the_supporting_tables():
    results = {
        "environment": {
            "date": "2026-11-23T12:00:00",
            "host": "vm",
            "device": "cpu",
            "cpu_count": 2,
            "torch_threads": 2,
            "torch": "2.14.1",
        },
        "benchmarks": {
            "pipeline": {
                "title": "Input pipeline",
                "goal": "ratio >= 0.9",
                "ratio": 0.92,
                "met": True,
                "seconds": 70.0,
                "rows": [{"feed": "tensors", "img_s": 350.0}],
                "tables": [
                    {
                        "title": "Feeds alone",
                        "rows": [{"work": "step", "ms": 2.8}, {"work": "loader", "share": 0.06}],
                    }
                ],
            }
        },
    }
    text = to_markdown(results)
    assert "Goal: ratio >= 0.9. Measured: **0.92** (met); 70 s." in text
    assert "| feed | img_s |\n|---|---|\n| tensors | 350.0 |" in text
    # The second row's extra column is not lost because the first row lacks it.
    assert "### Feeds alone\n\n| work | ms | share |" in text
    assert "| loader |  | 0.06 |" in text


def test_operator_breakdown_accounts_for_the_whole_profiled_step():
    rows = op_breakdown("mobilenet_v3_small", "train", batch=2, steps=1, device="cpu")
    by_name = {row["operators"]: row for row in rows}
    assert list(by_name) == [name for name, _ in OP_CATEGORIES] + ["other", "total"]
    for fmt in ("contiguous_ms", "channels_last_ms"):
        parts = sum(row[fmt] for row in rows if row["operators"] != "total")
        assert abs(parts - by_name["total"][fmt]) < 0.1 * len(rows)  # rounded to 0.1 ms each
        # A MobileNetV3 step is mostly convolutions, and it has batch norms to profile.
        assert by_name["convolution backward"][fmt] > 0 and by_name["batch norm forward"][fmt] > 0


def test_step_tax_times_the_default_training_setup_with_a_trivial_network(tmp_path):
    model, trainer = project_trainer("cpu", str(tmp_path), [])
    assert type(model) is ImageClassifier and isinstance(model.net, TrivialNet)
    kinds = [type(c) for c in trainer.callbacks]
    for kind in (NonFiniteLossGuard, RngStateCheckpoint, LearningRateMonitor, ModelCheckpoint):
        assert kind in kinds or any(issubclass(k, kind) for k in kinds), kind
    assert not any(isinstance(c, ProgressBar) for c in trainer.callbacks)
    assert any(isinstance(logger, ResumableCSVLogger) for logger in trainer.loggers)
    # the default config's optimiser and schedule
    assert model.optimizer_cfg["_target_"] == "torch.optim.AdamW"
    assert model.scheduler_cfg["_target_"] == "mbv3_lightning.training.optim.OneCycleSchedule"


@pytest.mark.slow
def test_step_tax_reports_framework_milliseconds_per_step():
    result = run("cpu", quick=True)
    (row,) = result["rows"]
    assert row["bare_ms_step"] > 0 and row["project_ms_step"] > 0
    assert result["ratio"] == row["tax_ms_step"]
    assert row["tax_ms_step"] == pytest.approx(
        row["project_ms_step"] - row["bare_ms_step"], abs=2e-3
    )
    assert result["met"] == (row["tax_ms_step"] <= GOAL_MS)
    assert len(row["project_runs_ms_step"]) == len(row["bare_runs_ms_step"]) == 2
