"""Every figure the project writes, drawn and checked for collisions: no text on text, no
legend on data, no caption under an image (the checker: tests/figure_check.py).

The figures come from the code that makes them for users: a run's files
(``write_run_files``) and the label review's contact sheet (``write_contact_sheet``), whose
every ``Figure.savefig`` is checked just before it writes (the ``saved_figures`` fixture), so
a figure added there later is checked without being listed here; and the figures of the sweep
report and its paper section, from the builders ``write_report`` writes them with (writing
every one as a 300-dpi PNG and a PDF takes a minute on 2 cores: the slow test does).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from mbv3_lightning.deploy.predictor import load_predictor
from mbv3_lightning.deploy.review import review_samples, write_contact_sheet
from mbv3_lightning.runs.files import read_run_curves, write_run_files
from mbv3_lightning.runs.record import EvaluationReport, RunRecord
from mbv3_lightning.sweeps.figures import display_name, roc_figure
from mbv3_lightning.sweeps.paper import CURVE_ROC_FIGURES, PAPER_DATASETS, paper_figures
from mbv3_lightning.sweeps.report import (
    DATASET_FIGURES,
    report_figures,
    table_rows,
    write_report,
)
from mbv3_lightning.sweeps.results import Group, group_cells, load_cells

from .figure_check import collisions


# ------------------------------------------------------------------------ the checker
def _plot(legend_loc: str = "upper left", title: str = "a title") -> Figure:
    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1, 2], [0, 1, 0], label="rise and fall")
    ax.set_title(title)
    ax.legend(loc=legend_loc)
    return fig


def test_the_checker_finds_what_was_built_to_collide():
    clean = _plot(legend_loc="lower center")  # the tent's base: no point of it lies there
    assert collisions(clean, inside_figure=True) == []

    fig = _plot()
    ax = fig.axes[0]
    ax.text(0.5, 0.5, "two labels", transform=ax.transAxes)
    ax.text(0.53, 0.52, "on one spot", transform=ax.transAxes)
    ax.get_legend().set_loc("upper center")  # on the tent's peak
    found = collisions(fig)
    assert "text 'two labels' overlaps text 'on one spot'" in found
    assert "the legend ['rise and fall'] covers the line 'rise and fall' in the axes 'a title'" in (
        found
    )

    # a picture over another axes' caption, as the old contact sheet drew it
    sheet = Figure(figsize=(2, 3))
    top, bottom = sheet.subplots(2, 1)
    top.imshow(np.zeros((4, 4, 3)), extent=(0, 1, 0, 1))
    bottom.set_title("file_name.jpg\ngiven: apple\npredicted: pear", fontsize=30)
    found = collisions(sheet)
    assert any(p.startswith("the image under '' covers text 'file_name.jpg") for p in found)

    wide = _plot(title="a title far too long for a figure four inches wide to hold it")
    assert any(
        p.endswith("is cut off at the figure's edge") for p in collisions(wide, inside_figure=True)
    )


@pytest.mark.parametrize(
    ("draw", "covered"),
    [
        (lambda ax: ax.bar([1.5], [2.0], width=0.4), "a Rectangle"),
        (lambda ax: ax.fill_between([0, 3], [1.8, 1.8], [2.0, 2.0]), "a FillBetweenPolyCollection"),
        (lambda ax: ax.scatter([1.5], [2.1]), "a PathCollection"),
        (lambda ax: ax.errorbar([1.5], [1.0], yerr=[1.5], fmt="none"), "a LineCollection"),
    ],
    ids=["bar", "band", "scatter", "error bar"],
)
def test_the_checker_sees_a_legend_on_bars_bands_points_and_error_bars(draw, covered):
    fig = Figure(figsize=(4, 3), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 3], [0, 0], label="baseline")
    draw(ax)
    ax.set(xlim=(0, 3), ylim=(0, 2.2))
    ax.legend(loc="upper center")
    assert any(covered in p for p in collisions(fig)), collisions(fig)


def test_the_checker_measures_rotated_labels_as_drawn():
    """Labels at 45 degrees stand side by side although their upright boxes overlap; the
    same labels set upright on the same ticks run into each other."""
    names = [f"Apple Red Delicious {i}" for i in range(8)]
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    ax.set_xticks(range(8), labels=names, rotation=45, ha="right")
    assert collisions(fig) == []
    ax.set_xticks(range(8), labels=names, rotation=0)
    assert any("overlaps text 'Apple Red Delicious" in p for p in collisions(fig))


# ------------------------------------------------------------------------ inputs
def _run_dir(trained_checkpoint: Path) -> Path:
    return trained_checkpoint.parent.parent


def _roc_curve(auc: float, points: int = 40) -> dict[str, object]:
    """A smooth ROC curve of area ``auc``: tpr = fpr ** a has area 1 / (1 + a)."""
    fpr = np.linspace(0.0, 1.0, points)
    return {"fpr": fpr.tolist(), "tpr": (fpr ** ((1 - auc) / auc)).tolist(), "auc": auc}


def paper_sweep(
    run: Path,
    sweep: Path,
    models: tuple[str, ...],
    seeds: tuple[int, ...],
    datasets: tuple[str, ...] = PAPER_DATASETS,
) -> Path:
    """A sweep folder shaped like the paper's study (``datasets`` x ``models`` x ``seeds``),
    each cell a copy of the real run ``run`` given its grid point: the record's
    model, dataset and seed, scores and a macro ROC of its own (``test/auroc`` is that ROC's
    area, as training writes it), and the run's learning curves moved per model and seed. The
    second model's validation loss starts at 2e6, as a diverging run's does."""
    record = json.loads((run / "metrics.json").read_text())
    curves = read_run_curves(run)
    rng = np.random.default_rng(0)
    cells = []
    for dataset in datasets:
        for m, model in enumerate(models):
            for seed in seeds:
                job, overrides = (
                    len(cells),
                    [f"dataset={dataset}", f"model={model}", f"seed={seed}"],
                )
                cell = sweep / str(job)
                cell.mkdir(parents=True)
                for name in ("split_manifest.json", "class_indices.json"):
                    shutil.copy(run / name, cell / name)
                auc = float(np.clip(0.78 + 0.05 * m + rng.normal(0, 0.03), 0.55, 0.99))
                roc = {**json.loads((run / "roc.json").read_text()), "macro": _roc_curve(auc)}
                (cell / "roc.json").write_text(json.dumps(roc))
                metrics = {**record["metrics"], "test/auroc": auc, "test/acc": auc - 0.1}
                cell_record = {
                    **record,
                    "model": model,
                    "dataset": dataset,
                    "seed": seed,
                    "metrics": {**metrics, "val/acc_best": auc - 0.08},
                    "run_dir": str(cell),
                    "test_set_ms_per_image": 0.5 * (m + 1) + 0.05 * seed,
                }
                (cell / "metrics.json").write_text(json.dumps(cell_record))
                rows = []
                for row in curves:
                    moved = {k: v * (1 + 0.3 * m + 0.05 * seed) for k, v in row.items()}
                    for key in ("train/acc", "val/acc"):
                        moved[key] = min(1.0, row[key] * (0.8 + 0.05 * m + 0.02 * seed))
                    if m == 1 and row["epoch"] < 2:
                        moved["val/loss"] = 2e6 / (row["epoch"] + 1)
                    rows.append({**moved, "epoch": int(row["epoch"])})
                header = list(curves[0])
                lines = [",".join(header), *(",".join(str(r[k]) for k in header) for r in rows)]
                (cell / "curves.csv").write_text("\n".join(lines) + "\n")
                status = {"job": job, "overrides": overrides, "status": "completed"}
                (cell / "status.json").write_text(json.dumps(status))
                cells.append({**status, "dir": str(job)})
    grid = [c["overrides"] for c in cells]
    (sweep / "sweep.json").write_text(json.dumps({"grid": grid, "cells": cells}))
    return sweep


# ------------------------------------------------------------------------ the figures
RUN_FIGURES = {"curves.png", "roc.png", "confusion.png", "confusion_train.png", "confusion_val.png"}
# Fruits-360's longest names are about this long; 30 classes keep the matrix annotated.
LONG_NAMES = [f"{'Apple Red Delicious' if i % 2 else 'Pear Forelle'} {i}" for i in range(30)]


def _run_inputs(run: Path) -> tuple[RunRecord, list[dict[str, float]], EvaluationReport, list]:
    """A finished run's record, curves, evaluation report and per-epoch confusion matrices,
    as ``write_run_files`` takes them, read back from the run's own files (the test split's
    confusion matrix is not among them: the best epoch's validation one stands in)."""
    record = RunRecord.read(run)
    epochs = json.loads((run / "epoch_confusions.json").read_text())["epochs"]
    best = [e for e in epochs if e["stage"] == "val" and e["epoch"] == record.timings.best_epoch]
    report = EvaluationReport(
        class_names=record.data.class_names,
        per_class=record.per_class,
        roc=json.loads((run / "roc.json").read_text()),
        confusion=best[0]["confusion"],
    )
    return record, read_run_curves(run), report, epochs


def test_a_runs_figures_do_not_collide(trained_checkpoint, saved_figures, tmp_path):
    """curves.png, roc.png and the confusion matrices of the session's trained run."""
    record, curves, report, epochs = _run_inputs(_run_dir(trained_checkpoint))
    write_run_files(tmp_path / "run", record, curves, report, epochs)
    assert set(saved_figures.problems) == RUN_FIGURES
    assert not saved_figures.failures, saved_figures.failures
    assert saved_figures.figures["curves.png"].axes[0].get_yscale() == "linear"


def test_a_crowded_runs_figures_do_not_collide(trained_checkpoint, saved_figures, tmp_path):
    """The same run's figures with 30 long class names (every ROC curve in the legend, every
    confusion cell annotated) and a loss that starts at 2e6."""
    record, curves, report, _ = _run_inputs(_run_dir(trained_checkpoint))
    record.data.class_names = LONG_NAMES
    rng = np.random.default_rng(0)
    counts = (rng.integers(0, 3, (30, 30)) + np.eye(30, dtype=int) * 20).tolist()
    curve = _roc_curve(0.9)
    roc = {
        "classes": {name: _roc_curve(float(rng.uniform(0.7, 0.99))) for name in LONG_NAMES},
        "micro": curve,
        "macro": curve,
    }
    report = EvaluationReport(LONG_NAMES, report.per_class, roc, counts)
    curves = [{**row, "val/loss": 2e6} if row["epoch"] == 0 else row for row in curves]
    # without the per-epoch matrices: confusion.png is drawn by the same code, once is enough
    write_run_files(tmp_path / "run", record, curves, report)
    assert set(saved_figures.problems) == {"curves.png", "roc.png", "confusion.png"}
    assert not saved_figures.failures, saved_figures.failures
    loss = saved_figures.figures["curves.png"].axes[0]
    assert loss.get_yscale() == "log" and loss.get_ylabel() == "cross-entropy loss (log scale)"


MODELS = ("mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v2")


def _check_roc_legend_and_loss_axis(figs: dict[str, Figure], written: list[list[str]]) -> None:
    """The ROC legend quotes the AUROC the report's table prints (mean ± std over the three
    seeds); the validation loss that starts at 2e6 is on a log axis, the training loss not."""
    legend = [t.get_text() for t in figs["roc_fruits360"].legends[0].texts]
    for row in written:
        auroc = row[7]  # the table's AUROC column
        assert " ± " in auroc
        assert f"{display_name(row[0])}, AUC {auroc} (3 seeds)" in legend
    curves = figs["curves_fruits360"].axes
    assert curves[3].get_yscale() == "log" and "log scale" in curves[3].get_ylabel()
    assert curves[1].get_yscale() == "linear"


def test_the_sweep_and_paper_reports_figures_do_not_collide(trained_checkpoint, tmp_path):
    """Every figure of ``mbv3 report`` and of its paper section (Figs 3-10), built from a
    paper-shaped sweep on Fruits-360 and checked as drawn (writing them: the slow test)."""
    sweep = paper_sweep(
        _run_dir(trained_checkpoint), tmp_path / "sweep", MODELS, (1, 2, 3), ("fruits360",)
    )
    cells = load_cells(sweep)
    per_dataset = group_cells(cells)
    figs = {**report_figures(per_dataset), **paper_figures(cells, per_dataset)}
    assert set(figs) == {
        *(f"{kind}_fruits360" for kind in DATASET_FIGURES),
        "pareto",
        "fig3_samples",
        "fig4_fruits360_curves",
        "fig5_fruits360_roc",
        "fig10_test_time_accuracy",
    }
    drawn = {name: fig for name, fig in figs.items() if fig is not None}
    assert set(drawn) == set(figs), "every figure has its data"
    failures = {name: found for name, fig in drawn.items() if (found := collisions(fig))}
    assert not failures, failures
    _check_roc_legend_and_loss_axis(drawn, table_rows(per_dataset["fruits360"]))

    # one seed: its own curve, no band, and the legend names the seed
    small = per_dataset["fruits360"][1]
    one = Group(small.dataset, small.variant, cells=small.cells[1:2])
    fig = roc_figure("fruits360", [one])
    assert fig is not None and not fig.axes[0].collections
    auc = one.cells[0].value("test/auroc")
    assert fig.legends[0].texts[0].get_text() == f"MobileNetV3-Small, AUC {auc:.4f} (seed 2)"


@pytest.mark.slow
def test_the_written_reports_figures_do_not_collide(trained_checkpoint, saved_figures, tmp_path):
    """``write_report`` on the paper's three datasets: every PNG and PDF it writes."""
    sweep = paper_sweep(_run_dir(trained_checkpoint), tmp_path / "sweep", MODELS, (1, 2, 3))
    written = write_report(sweep)
    expected = {
        *(f"{kind}_{d}.png" for kind in DATASET_FIGURES for d in PAPER_DATASETS),
        "pareto.png",
        "fig3_samples.png",
        *(f"fig{n}_{d}_curves.png" for d, (n, _) in CURVE_ROC_FIGURES.items()),
        *(f"fig{n}_{d}_roc.png" for d, (_, n) in CURVE_ROC_FIGURES.items()),
        "fig10_test_time_accuracy.png",
    }
    assert set(saved_figures.problems) == expected | {n.replace(".png", ".pdf") for n in expected}
    assert not saved_figures.failures, saved_figures.failures
    figs = {name.removesuffix(".png"): fig for name, fig in saved_figures.figures.items()}
    _check_roc_legend_and_loss_axis(figs, written["tables"]["fruits360"])


def test_the_review_contact_sheet_does_not_collide(trained_checkpoint, saved_figures, tmp_path):
    """review.png of the trained model on its test images, some of them under the long file
    names cameras write, every caption clear of the title, its neighbours and the next row."""
    predictor = load_predictor(trained_checkpoint)
    manifest = json.loads((_run_dir(trained_checkpoint) / "split_manifest.json").read_text())
    samples = []
    for i, (relative, label) in enumerate(manifest["splits"]["test"]):
        source = Path(manifest["root"]) / relative
        path = tmp_path / "images" / f"{'IMG_20240613_141523_burst_cover_' * (i % 2)}{i:03d}.jpg"
        path.parent.mkdir(exist_ok=True)
        shutil.copy(source, path)
        samples.append((path, int(label)))
    rows = review_samples(predictor, samples)
    title = (
        "mobilenet_v3_small on tiny, test split: the 12 labels most likely wrong "
        "(cleanlab label quality)"
    )
    write_contact_sheet(rows, tmp_path / "review.png", title)
    assert set(saved_figures.problems) == {"review.png"}
    assert not saved_figures.failures, saved_figures.failures
