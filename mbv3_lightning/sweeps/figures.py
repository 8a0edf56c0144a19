"""The sweep report's figures: the MobileNetV3 image-classification paper's Figs 4-10 and a
Pareto plot, each as a 300-dpi PNG and a PDF beside it.

Each figure has a builder (``curves_figure``: the matplotlib ``Figure``, or ``None`` when no
run has the data it needs, e.g. runs that predate ``roc.json``) and a writer (``plot_curves``:
the written PNG's path, the PDF has the same stem, or ``None``), so the report can say what
is missing instead of drawing an empty axis. Conventions shared by every figure: models by
their display names ("MobileNetV3-Small"), legends outside the axes (they never cover data),
constrained layout and a tight bounding box (labels stay inside the saved frame), loss on a
log axis when it spans orders of magnitude, a multi-seed curve as its mean with a ± std band,
and epochs counted from 1, as in the run's own ``curves.png``. Figures are drawn on ``Figure``
objects, never through pyplot, so no global backend is touched.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from mbv3_lightning.runs.figures import set_loss_scale
from mbv3_lightning.sweeps.results import Group
from mbv3_lightning.sweeps.tables import NA, mean_std_text

LATENCY_KEY = "test_ms_per_image"
ACCURACY_KEY = "test/acc"
PNG_DPI = 300

# How the MobileNetV3 image-classification paper (and most papers) name the architectures.
MODEL_NAMES = {
    "mobilenet_v3_large": "MobileNetV3-Large",
    "mobilenet_v3_small": "MobileNetV3-Small",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v1": "MobileNetV1",
    "alexnet": "AlexNet",
    "inception_v3": "InceptionV3",
    "inception_v3_noaux": "InceptionV3",  # the config choice, named so until its cell finishes
    "shufflenet_v2": "ShuffleNetV2",
}
DATASET_NAMES = {
    "fruits360": "Fruits-360",
    "fruits360_mini": "Fruits-360 (bundled sample)",
    "monkeys10": "10 Monkey Species",
    "birds": "Birds",
    "birds525": "BIRDS 525",
    "car_colours": "Car colours",
}


def display_name(variant: str) -> str:
    """``mobilenet_v3_small width_mult=0.5`` -> ``MobileNetV3-Small width_mult=0.5``."""
    model, _, rest = variant.partition(" ")
    return " ".join([MODEL_NAMES.get(model, model), rest]).strip()


def dataset_name(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def save_figure(fig: Figure, path: Path) -> Path:
    """``path`` as a 300-dpi PNG plus a PDF beside it; labels kept inside the saved frame."""
    for target, dpi in ((path.with_suffix(".pdf"), None), (path.with_suffix(".png"), PNG_DPI)):
        fig.savefig(target, dpi=dpi, bbox_inches="tight", pad_inches=0.05)
    return path.with_suffix(".png")


def write_figure(fig: Figure | None, path: Path) -> Path | None:
    """:func:`save_figure` for a built figure; ``None`` for one that had no data."""
    return None if fig is None else save_figure(fig, path)


def _legend_below(fig: Figure, handles: list, labels: list[str]) -> None:
    """One legend for the whole figure, below the axes: it never covers a curve or a point."""
    if handles:
        ncol = min(len(labels), 3 if max(len(x) for x in labels) > 24 else 5)
        fig.legend(handles, labels, loc="outside lower center", ncol=ncol, fontsize=8)


def seed_band(group: Group, column: str) -> tuple[list[int], list[float], list[float]]:
    """Epochs (from 1), mean and sample std of ``column`` over the group's seeds, for the
    epochs every seed reached (std 0 with one seed)."""
    per_seed = []
    for cell in group.cells:
        points = {
            int(r["epoch"]): float(r[column])
            for r in cell.curves()
            if r.get(column) is not None and math.isfinite(float(r[column]))
        }
        if points:
            per_seed.append(points)
    if not per_seed:
        return [], [], []
    epochs = sorted(set.intersection(*(set(p) for p in per_seed)))
    means = [statistics.fmean(p[e] for p in per_seed) for e in epochs]
    stds = [
        statistics.stdev([p[e] for p in per_seed]) if len(per_seed) > 1 else 0.0 for e in epochs
    ]
    return [e + 1 for e in epochs], means, stds


# Panel order of the paper's Fig 8: (a) training accuracy, (b) training loss,
# (c) validation accuracy, (d) validation loss.
CURVE_PANELS = (
    ("train/acc", "(a) training accuracy", "accuracy"),
    ("train/loss", "(b) training loss", "cross-entropy loss"),
    ("val/acc", "(c) validation accuracy", "accuracy"),
    ("val/loss", "(d) validation loss", "cross-entropy loss"),
)


def curves_figure(dataset: str, groups: list[Group], title: str = "") -> Figure | None:
    """Training and validation accuracy and loss per epoch, every variant overlaid, mean
    +/- std over seeds as a band (the paper's Figs 4/6/8); a loss panel whose curves span
    more than two orders of magnitude is drawn on a log axis."""
    fig = Figure(figsize=(9, 6.6), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    handles, labels = [], []
    plotted: dict[str, list[float]] = {column: [] for column, _, _ in CURVE_PANELS}
    drawn = False
    for i, group in enumerate(groups):
        colour = f"C{i % 10}"
        for ax, (column, _, _) in zip(axes.flat, CURVE_PANELS, strict=True):
            epochs, mean, std = seed_band(group, column)
            if not epochs:
                continue
            plotted[column] += mean
            (line,) = ax.plot(epochs, mean, color=colour, marker="o", ms=3, lw=1.4)
            if any(std):
                low = [m - s for m, s in zip(mean, std, strict=True)]
                high = [m + s for m, s in zip(mean, std, strict=True)]
                ax.fill_between(epochs, low, high, color=colour, alpha=0.18, lw=0)
            drawn = True
            if display_name(group.variant) not in labels:
                handles.append(line)
                labels.append(display_name(group.variant))
    if not drawn:
        return None
    for ax, (column, panel, ylabel) in zip(axes.flat, CURVE_PANELS, strict=True):
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)  # plain values, no "1e-5+2.3" header
        if column.endswith("acc"):
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel(ylabel)
        else:
            set_loss_scale(ax, plotted[column], ylabel)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    seeds = max((len(g.cells) for g in groups), default=0)
    band = ", band = mean ± std over seeds" if seeds > 1 else ""
    fig.suptitle(title or f"{dataset_name(dataset)}: learning curves{band}")
    _legend_below(fig, handles, labels)
    return fig


def plot_curves(dataset: str, groups: list[Group], path: Path, title: str = "") -> Path | None:
    """:func:`curves_figure` written to ``path`` (PNG + PDF)."""
    return write_figure(curves_figure(dataset, groups, title), path)


# The common false-positive-rate grid the seeds' ROC curves are averaged on.
ROC_GRID = np.linspace(0.0, 1.0, 201)
AUC_DIGITS = 4  # as the report's AUROC column prints it


def seed_roc(group: Group) -> tuple[np.ndarray, np.ndarray, list[int | None]] | None:
    """Mean and sample std of the seeds' macro-average test TPR on :data:`ROC_GRID` (std 0
    with one seed), and the seeds drawn; None if no run of the group wrote ``roc.json``."""
    tprs, seeds = [], []
    for cell in group.cells:
        roc = cell.roc()
        if not roc or "macro" not in roc:
            continue
        tpr = np.interp(ROC_GRID, roc["macro"]["fpr"], roc["macro"]["tpr"])
        tpr[0] = 0.0  # every ROC curve starts at (0, 0), whatever its first threshold holds
        tprs.append(tpr)
        seeds.append(cell.record.identity.seed if cell.record else None)
    if not tprs:
        return None
    stack = np.stack(tprs)
    std = stack.std(axis=0, ddof=1) if len(tprs) > 1 else np.zeros_like(ROC_GRID)
    return stack.mean(axis=0), std, seeds


def roc_label(group: Group, seeds: list[int | None]) -> str:
    """``MobileNetV3-Small, AUC 0.8012 ± 0.0319 (3 seeds)``: the AUC as the report's table
    prints it (``test/auroc``, mean ± std over seeds), and which seeds the curve shows."""
    auc = group.stat("test/auroc")  # roc.json's macro AUC is test/auroc: one number
    text = NA if auc is None else mean_std_text(auc, AUC_DIGITS)
    drawn = f"{len(seeds)} seeds" if len(seeds) > 1 else f"seed {seeds[0]}"
    if len(seeds) < len(group.cells):  # the other runs wrote no roc.json
        drawn = f"curve: {drawn} of {len(group.cells)}"
    return f"{display_name(group.variant)}, AUC {text} ({drawn})"


def roc_figure(dataset: str, groups: list[Group], title: str = "") -> Figure | None:
    """Macro-average test ROC of every variant (Figs 5/7/9): with several seeds the mean TPR
    over them on a common FPR grid, with a ± std band; the legend gives the AUC as the table
    does (mean ± std over seeds) and how many seeds the curve averages, or which seed it is."""
    fig = Figure(figsize=(5.6, 5.6), layout="constrained")
    ax = fig.subplots()
    handles, labels = [], []
    banded = False
    for i, group in enumerate(groups):
        curve = seed_roc(group)
        if curve is None:
            continue
        mean, std, seeds = curve
        colour = f"C{i % 10}"
        (line,) = ax.plot(ROC_GRID, mean, color=colour, lw=1.5)
        if len(seeds) > 1:
            low, high = np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1)
            ax.fill_between(ROC_GRID, low, high, color=colour, alpha=0.18, lw=0)
            banded = True
        handles.append(line)
        labels.append(roc_label(group, seeds))
    if not handles:
        return None
    (chance,) = ax.plot([0, 1], [0, 1], ":", color="grey")
    title = title or f"{dataset_name(dataset)}: macro-average test ROC"
    ax.set(
        title=f"{title}\nmean over seeds, band = ± std" if banded else title,
        xlabel="false positive rate",
        ylabel="true positive rate",
        xlim=(0, 1),
        ylim=(0, 1.01),
        aspect="equal",
    )
    ax.grid(alpha=0.3)
    # one entry per row: the labels are long, and side by side they would run into each other
    fig.legend([*handles, chance], [*labels, "chance"], loc="outside lower center", fontsize=8)
    return fig


def plot_macro_roc(dataset: str, groups: list[Group], path: Path, title: str = "") -> Path | None:
    """:func:`roc_figure` written to ``path`` (PNG + PDF)."""
    return write_figure(roc_figure(dataset, groups, title), path)


def _points(groups: list[Group], cost_key: str) -> list[tuple[float, float, float, str]]:
    """(cost, accuracy, accuracy std, variant) for every group that has both values."""
    points = []
    for group in groups:
        cost, acc = group.stat(cost_key), group.stat(ACCURACY_KEY)
        if cost is not None and acc is not None:
            points.append((cost[0], acc[0], acc[1], group.variant))
    return points


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both lower cost and higher accuracy."""
    front = []
    for i, (cost, acc) in enumerate(points):
        dominated = any(
            (c <= cost and a >= acc) and (c < cost or a > acc)
            for j, (c, a) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def cost_axis(groups: list[Group]) -> tuple[str, str]:
    """Test latency if the runs measured it; otherwise parameters, stated on the axis."""
    if any(c.value(LATENCY_KEY) is not None for g in groups for c in g.cells):
        return LATENCY_KEY, "test time per image (ms, batch 1, median)"
    return "params", "parameters (test latency not recorded by these runs)"


def time_accuracy_figure(dataset: str, groups: list[Group]) -> Figure | None:
    """Test time per image against test accuracy, one labelled point per variant (Fig 10)."""
    points = _points(groups, LATENCY_KEY)
    if not points:
        return None
    fig = Figure(figsize=(6, 4.8), layout="constrained")
    ax = fig.subplots()
    handles, labels = [], []
    for i, (ms, acc, std, name) in enumerate(points):
        bars = ax.errorbar(ms, acc, yerr=std or None, fmt="o", color=f"C{i % 10}", capsize=3)
        handles.append(bars)
        labels.append(display_name(name))
    ax.set(
        title=f"{dataset_name(dataset)}: test time vs accuracy",
        xlabel="test time per image (ms, batch 1, median)",
        ylabel="test accuracy",
    )
    ax.grid(alpha=0.3)
    _legend_below(fig, handles, labels)
    return fig


def plot_test_time(dataset: str, groups: list[Group], path: Path) -> Path | None:
    """:func:`time_accuracy_figure` written to ``path`` (PNG + PDF)."""
    return write_figure(time_accuracy_figure(dataset, groups), path)


def pareto_figure(per_dataset: dict[str, list[Group]]) -> Figure | None:
    """Accuracy against cost per dataset; the Pareto front is joined and its points filled."""
    all_groups = [g for groups in per_dataset.values() for g in groups]
    cost_key, cost_label = cost_axis(all_groups)
    panels = {ds: pts for ds, groups in per_dataset.items() if (pts := _points(groups, cost_key))}
    if not panels:
        return None
    fig = Figure(figsize=(5.5 * len(panels), 4.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)
    scale = 1e6 if cost_key == "params" else 1.0
    # one colour per variant across panels, so the shared legend names each once
    variants = list(dict.fromkeys(name for pts in panels.values() for *_, name in pts))
    handles: dict[str, object] = {}
    for ax, (dataset, points) in zip(axes[0], panels.items(), strict=True):
        xy = [(cost / scale, acc) for cost, acc, _, _ in points]
        front = pareto_front(xy)
        for i, ((x, y), (_, _, std, name)) in enumerate(zip(xy, points, strict=True)):
            colour = f"C{variants.index(name) % 10}"
            # the legend shows the variant's colour, filled, whether or not it is on a front
            handles[name] = Line2D([], [], marker="o", ms=8, ls="", color=colour)
            ax.errorbar(
                x,
                y,
                yerr=std or None,
                fmt="o",
                mfc=colour if i in front else "white",
                color=colour,
                capsize=3,
                ms=8,
            )
        (front_line,) = ax.plot(
            [xy[i][0] for i in front], [xy[i][1] for i in front], "--", color="black", lw=1
        )
        handles["Pareto front"] = front_line
        unit = " (M)" if cost_key == "params" else ""
        ax.set(title=dataset_name(dataset), xlabel=cost_label + unit, ylabel="test accuracy")
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy vs cost (filled = on the Pareto front)")
    names = list(handles)
    _legend_below(fig, [handles[n] for n in names], [display_name(n) for n in names])
    return fig


def plot_pareto(per_dataset: dict[str, list[Group]], path: Path) -> Path | None:
    """:func:`pareto_figure` written to ``path`` (PNG + PDF)."""
    return write_figure(pareto_figure(per_dataset), path)
