"""The benchmark harness: fair ordering of variants, the results table, the operator profile,
the per-step framework tax, the GPU ceiling and overhead benchmarks (their CUDA paths in the
tests named ``*cuda*``, which skip without a GPU: `pytest -k cuda` on a GPU machine)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from PIL import Image

from benchmarks import bn_recalibration, ceiling, device_defaults, overhead
from benchmarks.memory_format import OP_CATEGORIES, op_breakdown, steps_seconds
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


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: torch.cuda.is_available() is false"
)


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.jpg"))
    }


def test_ceiling_folder_holds_real_jpegs_of_the_bundled_classes_seeded(tmp_path):
    written = ceiling.make_jpeg_folder(tmp_path / "a", {"train": 25, "val": 10}, workers=2)
    classes = sorted(ceiling.source_photos())
    assert len(classes) == 10 and written["written"] == 35 and written["classes"] == 10
    for split, count in (("train", 25), ("val", 10)):
        folders = sorted(p.name for p in (tmp_path / "a" / split).iterdir())
        assert folders == classes  # the bundled photos' real classes, every one in each split
        files = sorted((tmp_path / "a" / split).rglob("*"))
        files = [f for f in files if f.is_file()]
        assert len(files) == count
        per_class = [len(list((tmp_path / "a" / split / c).iterdir())) for c in classes]
        assert max(per_class) - min(per_class) <= 1  # classes in turn
        for path in files:
            with Image.open(path) as image:
                assert image.format == "JPEG" and image.size == (100, 100)
                assert image.mode == "RGB"
                image.load()  # decodes: a real JPEG, not a renamed file
    # a variation, not a copy: no written file has its source photo's bytes
    sources = {
        hashlib.sha256(p.read_bytes()).hexdigest()
        for ps in ceiling.source_photos().values()
        for p in ps
    }
    assert not sources & set(_tree(tmp_path / "a").values())
    # seeded: one process or several, the same bytes
    ceiling.make_jpeg_folder(tmp_path / "b", {"train": 25, "val": 10}, workers=1)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")


def test_ceiling_runs_the_three_variants_end_to_end_on_the_cpu():
    result = ceiling.run("cpu", quick=True)
    size = ceiling.sizes("cpu", quick=True)
    (row,) = result["rows"]
    assert row["model"] == "mobilenet_v3_small" and row["input_size"] == 64 and row["batch"] == 16
    assert row["precision"] == "32-true" and row["memory_format"] == "channels_last"
    for key in ("ceiling_img_s", "bare_img_s", "project_img_s"):
        assert row[key] > 0, key
    # the ratios of the unrounded rates; the rates in the row are rounded to 0.1 image/s
    assert row["project/ceiling"] == pytest.approx(
        row["project_img_s"] / row["ceiling_img_s"], rel=0.05
    )
    assert row["project/bare"] == pytest.approx(row["project_img_s"] / row["bare_img_s"], rel=0.05)
    # the real project run trained every training image of the folder once per epoch
    assert row["project_images_per_epoch"] == [size.train_images] * size.epochs
    steps = size.train_images // size.batch - ceiling.WARMUP_STEPS
    assert row["timed_steps"] == f"ceiling {size.ceiling_steps}, bare {steps}, project {steps}"
    (folder,) = result["tables"][0]["rows"]
    assert folder["written"] == size.train_images + size.val_images and folder["classes"] == 10
    # a GPU goal: reported, not judged, on the CPU
    assert row["verdict"] == "not judged: the goal is a GPU goal"
    assert result["met"] is None and result["ratio"] == row["project/ceiling"]


def test_overhead_gpu_cell_code_path_runs_on_the_cpu():
    """The CUDA cells' code (batches on the device, a longer warm-up, the trainer's precision
    passed on) in full precision on the CPU; bf16 autocast is only fast on a GPU."""
    row = overhead.measure_cuda_cell(32, 4, overhead.CUDA_WARMUP_STEPS + 3, 2, "32-true", "cpu")
    assert row["timed_steps"] == 3 and row["precision"] == "32-true"
    assert row["bare_img_s"] > 0 and row["lightning_img_s"] > 0
    assert row["ratio"] == pytest.approx(row["lightning_img_s"] / row["bare_img_s"], rel=0.05)


def test_overhead_cells_keep_the_cpu_sizes_and_cover_the_gpu_goal():
    assert overhead.CPU_CELLS == ((100, 32, 40), (224, 32, 16))  # comparable with results/
    assert {(size, batch) for size, batch, _ in overhead.CUDA_CELLS} == {
        (100, 32),
        (224, 32),
        (100, 256),
        (224, 256),
    }
    assert overhead.gpu_precision() == "bf16-mixed"


@needs_cuda
def test_cuda_ceiling_variants_train_in_bf16_on_the_gpu(tmp_path):
    size = ceiling.Sizes(("mobilenet_v3_small",), 64, 16, 160, 20, 1, 8)
    folder = tmp_path / "jpegs"
    ceiling.make_jpeg_folder(folder, {"train": size.train_images, "val": size.val_images})
    row = ceiling.measure(folder, "mobilenet_v3_small", size, "cuda", tmp_path)
    assert row["precision"] == "bf16-mixed"
    assert row["ceiling_img_s"] > 0 and row["bare_img_s"] > 0 and row["project_img_s"] > 0
    assert row["project_images_per_epoch"] == [size.train_images]
    # on tensors already on the GPU the step outruns any loader of 64-px JPEGs
    assert row["ceiling_img_s"] > row["bare_img_s"]


@needs_cuda
def test_cuda_overhead_cell_compares_bf16_loops_on_gpu_batches():
    row = overhead.measure_cuda_cell(64, 16, overhead.CUDA_WARMUP_STEPS + 10, 2, "bf16-mixed")
    assert row["precision"] == "bf16-mixed" and row["timed_steps"] == 10
    assert 0.2 < row["ratio"] < 5, row  # both sides ran the same steps


@needs_cuda
def test_cuda_operator_breakdown_counts_each_kernel_once():
    rows = {r["operators"]: r for r in op_breakdown("mobilenet_v3_small", "train", 32, 4, "cuda")}
    assert rows["convolution forward"]["channels_last_ms"] > 0
    assert rows["convolution backward"]["channels_last_ms"] > 0
    # kernels run one after another on one stream: their total time cannot exceed the step's
    # wall time, which it would if each kernel were counted twice (operator + kernel events)
    steps_seconds("mobilenet_v3_small", "channels_last", "train", 32, 4, "cuda")  # warm
    wall = steps_seconds("mobilenet_v3_small", "channels_last", "train", 32, 4, "cuda")
    assert rows["total"]["channels_last_ms"] <= 1.1 * 1000 * wall / 4


def test_device_defaults_compares_the_cpu_default_with_every_combination(monkeypatch):
    monkeypatch.setattr(device_defaults, "SIZE", 64)
    result = device_defaults.run("cpu", quick=True)
    (row,) = result["rows"]
    # the CPU has no cudnn switch: the two memory formats, channels_last the default
    assert {key for key in row if key.endswith("img/s")} == {
        "contiguous img/s",
        "channels_last img/s",
    }
    assert row["default"] == "channels_last"
    assert row["fastest"] in ("contiguous", "channels_last")
    share = row["channels_last img/s"] / max(row["contiguous img/s"], row["channels_last img/s"])
    assert row["default_share_of_best"] == pytest.approx(share, abs=0.05)  # img/s are rounded
    assert result["met"] == (result["ratio"] >= device_defaults.GOAL)


@needs_cuda
def test_cuda_device_defaults_measure_cudnn_benchmark_and_both_formats(monkeypatch):
    monkeypatch.setattr(device_defaults, "SIZE", 64)
    result = device_defaults.run("cuda", quick=True)
    assert len(result["rows"]) == 4  # two models, batch 32 and 256
    for row in result["rows"]:
        assert row["default"] == "contiguous + cudnn.benchmark"
        assert len([key for key in row if key.endswith("img/s")]) == 4
        assert 0 < row["default_share_of_best"] <= 1


@pytest.mark.slow
def test_bn_recalibration_runs_the_demo_with_and_without_it_side_by_side():
    result = bn_recalibration.run("cpu", quick=True)
    rows = {(row["epochs"], row["recalibration"]): row for row in result["rows"]}
    assert set(rows) == {(3, "on"), (3, "off"), (2, "on"), (2, "off")}
    # 3 validations of 8 batches each; none without it
    assert rows[3, "on"]["recal_batches"] == 24 and rows[3, "off"]["recal_batches"] == 0
    assert 0 < rows[3, "on"]["recal_share_of_training"] < 0.5
    assert result["ratio"] == round(rows[3, "on"]["wall_s"] / rows[3, "off"]["wall_s"], 3)
    assert rows[2, "on"]["test_acc"] > rows[2, "off"]["test_acc"]  # the stale statistics' cost
