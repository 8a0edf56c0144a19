"""The MobileNetV3 image-classification paper's study: its tables' three formats, the paper's
preprocessing, the smoke datasets in their Kaggle layouts, and the whole smoke study."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from mbv3_lightning.data.paper_smoke import WRITERS
from mbv3_lightning.data.transforms import SquareResize
from mbv3_lightning.sweeps.paper import paper_figures
from mbv3_lightning.sweeps.report import report_figures
from mbv3_lightning.sweeps.results import group_cells, load_cells
from mbv3_lightning.sweeps.tables import Column, Table

from .conftest import FAST_OVERRIDES, run_module
from .figure_check import collisions


def _table() -> Table:
    table = Table(
        name="t",
        title="Table X: 50% & more",
        columns=[Column("model"), Column("params (M)", 2, "min", 1e6), Column("acc", 4, "max")],
        recipe=["command: python -m mbv3_lightning -m experiment=x", "seeds: 0"],
    )
    # 0.8999999761581421 is 0.9 in float32: it must not reach the CSV as noise
    table.rows = [
        ["mobilenet_v3_small", 2_542_856, 0.8999999761581421],
        ["alexnet", 61_100_840, (0.95, 0.01)],
        ["shufflenet_v2", None, None],
    ]
    return table


def test_a_table_in_markdown_csv_and_latex(tmp_path):
    written = _table().write(tmp_path)

    markdown = written["md"].read_text()
    assert "> command: python -m mbv3_lightning -m experiment=x" in markdown
    assert "| mobilenet_v3_small | **2.54** | 0.9000 |" in markdown  # fewest params: bold
    assert "| alexnet | 61.10 | **0.9500 ± 0.0100** |" in markdown  # best accuracy: bold
    assert "| shufflenet_v2 | n/a | n/a |" in markdown

    lines = written["csv"].read_text().splitlines()
    assert lines[:2] == ["# command: python -m mbv3_lightning -m experiment=x", "# seeds: 0"]
    rows = list(csv.reader(lines[2:]))
    assert rows[0] == ["model", "params (M)", "acc", "acc std"]
    assert rows[1] == ["mobilenet_v3_small", "2.54286", "0.9", ""]
    assert rows[2] == ["alexnet", "61.1008", "0.95", "0.01"]

    latex = written["tex"].read_text()
    assert "\\toprule" in latex and "\\midrule" in latex and "\\bottomrule" in latex
    assert "\\caption{Table X: 50\\% \\& more}" in latex
    assert "mobilenet\\_v3\\_small & \\textbf{2.54} & 0.9000 \\\\" in latex
    assert "\\textbf{0.9500 $\\pm$ 0.0100}" in latex
    assert latex.startswith("% command: python -m mbv3_lightning -m experiment=x")


def test_integers_stay_integers_in_the_csv(tmp_path):
    table = Table("n", "counts", [Column("class"), Column("train", 0)], rows=[["n0", 105]])
    rows = list(csv.reader(table.write_csv(tmp_path / "n.csv").read_text().splitlines()))
    assert rows[1] == ["n0", "105"]


def test_paper_preprocessing_squashes_to_the_square_input_size():
    # 40 x 20 image, left half black, right half white: no crop may cut either half away
    image = torch.zeros(3, 20, 40, dtype=torch.uint8)
    image[:, :, 20:] = 255
    out = SquareResize(16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))(image)
    assert out.shape == (3, 16, 16)
    assert out[:, :, :7].max() < 0.05 and out[:, :, 9:].min() > 0.95


def test_paper_preset_is_what_paper_mbv3_uses(compose_cfg, tmp_path):
    cfg = compose_cfg(["experiment=paper_mbv3", "dataset=monkeys10"])
    assert cfg.dataset.preprocess == "paper" and cfg.dataset.protocol == "paper"
    assert cfg.trainer.max_epochs == 10
    assert compose_cfg(["experiment=paper_mbv3", "dataset=birds"]).trainer.max_epochs == 30
    assert compose_cfg([]).dataset.preprocess == "augment"  # everyday training keeps it


def test_the_smoke_study_writes_stand_ins_that_read_as_their_kaggle_datasets(compose_cfg, tmp_path):
    """`experiment=paper_mbv3_smoke` on a clean clone: each DataModule writes its missing
    stand-in in the Kaggle layout (once; a second DataModule reuses it) and reads it."""
    sizes = {}
    for name in WRITERS:
        overrides = [f"dataset={name}", f"paths.data_dir={tmp_path}"]
        cfg = compose_cfg(["experiment=paper_mbv3_smoke", *overrides, *FAST_OVERRIDES])
        assert cfg.dataset.root == str(tmp_path / "paper_smoke" / name)
        dm = instantiate(cfg.dataset, input_size=32)
        sizes[name] = {s: len(dm.samples(s)) for s in ("train", "val", "test")}
        written = sorted(p.stat().st_mtime_ns for p in Path(cfg.dataset.root).rglob("*.jpg"))
        again = instantiate(cfg.dataset, input_size=32)  # found, not written again
        assert len(again.samples("train")) == sizes[name]["train"]
        assert (
            sorted(p.stat().st_mtime_ns for p in Path(cfg.dataset.root).rglob("*.jpg")) == written
        )
        if name == "monkeys10":
            assert dm.class_names[0] == "mantled_howler"
            assert dm.manifest()["split_sources"]["test"] == "validation/validation"
    assert sizes["fruits360"] == {"train": 80, "val": 40, "test": 50}
    assert sizes["monkeys10"] == {"train": 80, "val": 40, "test": 40}
    assert sum(sizes["birds"].values()) == 132 and sizes["birds"]["test"] == 32
    assert (tmp_path / "paper_smoke/fruits360/fruits-360/Training").is_dir()
    with Image.open(next((tmp_path / "paper_smoke/birds/train").rglob("*.jpg"))) as image:
        assert image.format == "JPEG" and image.size == (96, 72)
    assert not list(tmp_path.glob("paper_smoke/.tmp-*"))


PAPER_OUTPUTS = [
    *(f"table{n}.{ext}" for n in ("3_complexity", "4_fruits_time", "5_monkeys_split", "6_birds")
      for ext in ("md", "csv", "tex")),
    *(f"{fig}.{ext}" for fig in (
        "fig3_samples", "fig4_fruits360_curves", "fig5_fruits360_roc", "fig6_monkeys10_curves",
        "fig7_monkeys10_roc", "fig8_birds_curves", "fig9_birds_roc", "fig10_test_time_accuracy",
    ) for ext in ("pdf", "png")),
]  # fmt: skip


@pytest.mark.slow
def test_paper_smoke_study_end_to_end(tmp_path):
    """The documented two commands on a clean clone: the 15-cell study (it writes its
    stand-in data), then the report with every table and figure of the paper."""
    env_data = tmp_path / "data"
    started = time.perf_counter()
    sweep = tmp_path / "sweep"
    result = run_module(
        "mbv3_lightning",
        "-m",
        "experiment=paper_mbv3_smoke",
        f"paths.data_dir={env_data}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_module("mbv3_lightning.cli.report", str(sweep), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"paper_mbv3_smoke: {time.perf_counter() - started:.0f} s")  # shown with -s

    paper = sweep / "report" / "paper"
    for name in PAPER_OUTPUTS:
        path = paper / name
        assert path.is_file(), f"{name} missing"
        assert path.stat().st_size > (20_000 if name.endswith(".png") else 300), name
    for png in paper.glob("*.png"):
        with Image.open(png) as image:
            assert image.info["dpi"][0] == pytest.approx(300, abs=1)
    rows = list(
        csv.reader(
            line for line in (paper / "table3_complexity.csv").open() if not line.startswith("#")
        )
    )
    assert [r[0] for r in rows[1:]] == [
        "MobileNetV3-Large", "MobileNetV3-Small", "AlexNet", "InceptionV3", "ShuffleNetV2"
    ]  # fmt: skip
    assert rows[1][3] == "5.48303"  # params (M), ours, 1000 classes
    table5 = (paper / "table5_monkeys_split.md").read_text()
    assert "| n0 | mantled_howler | 8 | 4 | 4 | 105 | 26 |" in table5
    for cell in sweep.glob("[0-9]*"):
        record = json.loads((cell / "metrics.json").read_text())
        assert record["test_set_images"] > 0 and record["test_set_ms_per_image"] > 0
    report = (sweep / "report" / "report.md").read_text()
    assert "![fig10_test_time_accuracy](paper/fig10_test_time_accuracy.png)" in report

    # every figure of both reports, rebuilt from the real runs and checked as drawn
    cells = load_cells(sweep)
    per_dataset = group_cells(cells)
    figs = {**report_figures(per_dataset), **paper_figures(cells, per_dataset)}
    assert all(fig is not None for fig in figs.values()), figs
    collided = {name: found for name, fig in figs.items() if fig and (found := collisions(fig))}
    assert not collided, collided


def test_a_misspelt_protocol_or_preset_fails_at_compose_time(compose_cfg):
    from mbv3_lightning.cli.config_check import ConfigError, check_config

    cfg = compose_cfg(["dataset.protocol=papr", "dataset.preprocess=none"])
    with pytest.raises(ConfigError) as error:
        check_config(cfg)
    assert "dataset.protocol='papr' is not a valid choice; choose one of: kaggle | paper" in str(
        error.value
    )
    assert "dataset.preprocess='none'" in str(error.value)
