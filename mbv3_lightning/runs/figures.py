"""The run's figures as PNG: learning curves, ROC curves and the confusion matrix.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas, never through pyplot,
so nothing depends on (or changes) a global backend and no window is ever opened.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# Above this many classes a legend entry per class hides the curves: per-class ROC curves are
# drawn as thin grey lines without labels, and confusion cells lose their number annotations.
MAX_LABELLED_CLASSES = 20
MAX_ANNOTATED_CELLS = 30
# A loss panel whose values span more than this factor gets a log y axis: a diverging
# model's first epochs (a loss of 2e6) would otherwise flatten every other curve to 0.
LOG_SCALE_SPAN = 100.0


def _save(fig: Figure, path: Path) -> None:
    """``path`` as a PNG framed to its contents: long class names on a square confusion
    matrix can outgrow the figure's height, and a tight frame grows with them."""
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.05)


def _title(what: str, subtitle: str) -> str:
    return f"{what}\n{subtitle}" if subtitle else what


def spans_orders_of_magnitude(values: Iterable[float], span: float = LOG_SCALE_SPAN) -> bool:
    """Whether the positive finite ``values`` range over more than ``span`` (largest /
    smallest): such a panel reads only on a log axis."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return bool(positive) and max(positive) > span * min(positive)


def set_loss_scale(ax: Axes, values: Iterable[float], label: str) -> None:
    """A log y axis, said so in the label, when ``values`` span orders of magnitude;
    otherwise the linear axis and ``label`` as given."""
    if spans_orders_of_magnitude(values):
        ax.set_yscale("log")
        label = f"{label} (log scale)"
    ax.set_ylabel(label)


def plot_curves(curves: Sequence[dict[str, Any]], path: Path, subtitle: str = "") -> None:
    """Loss and accuracy per epoch, train vs validation (the layout of Fig. 4 of the
    MobileNetV3 image-classification paper); the loss on a log axis when it spans orders of
    magnitude."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, metric, label in ((loss_ax, "loss", "cross-entropy loss"), (acc_ax, "acc", "accuracy")):
        plotted: list[float] = []
        for stage, style in (("train", "o-"), ("val", "s--")):
            # epochs counted from 1, as in the sweep report's figures
            points = [(r["epoch"] + 1, r[f"{stage}/{metric}"]) for r in curves]
            points = [(e, v) for e, v in points if v is not None]
            if points:
                ax.plot(*np.array(points).T, style, markersize=4, label=stage)
                plotted += [v for _, v in points]
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if metric == "loss":
            set_loss_scale(ax, plotted, label)
        else:
            ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    acc_ax.set_ylim(-0.02, 1.02)
    # one legend for both panels, below them: inside an axes it would cover some epoch's point
    handles, labels = loss_ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=len(handles))
    fig.suptitle(_title("Learning curves", subtitle))
    _save(fig, path)


def plot_roc(roc: dict[str, Any], path: Path, subtitle: str = "") -> None:
    """One ROC curve per class plus the micro and macro averages, AUC in the legend."""
    classes = roc["classes"]
    labelled = len(classes) <= MAX_LABELLED_CLASSES
    fig = Figure(figsize=(10, 7), layout="constrained")
    ax = fig.subplots()
    for i, (name, curve) in enumerate(classes.items()):
        if labelled:
            label = f"{name} (AUC {curve['auc']:.3f})"
            ax.plot(curve["fpr"], curve["tpr"], lw=1.2, color=f"C{i % 10}", label=label)
        else:
            ax.plot(curve["fpr"], curve["tpr"], lw=0.6, color="0.6", alpha=0.5)
    if not labelled:
        ax.plot([], [], lw=0.6, color="0.6", label=f"{len(classes)} classes, one curve each")
    for key, style in (("micro", ":"), ("macro", "--")):
        average = roc[key]
        label = f"{key}-average (AUC {average['auc']:.3f})"
        ax.plot(average["fpr"], average["tpr"], style, lw=2.5, color="black", label=label)
    ax.plot([0, 1], [0, 1], lw=0.8, color="0.75", label="chance (AUC 0.5)")
    ax.set_xlim(-0.01, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(_title("ROC curves (one class vs rest)", subtitle))
    ax.grid(alpha=0.3)
    # beside the axes, so the legend never covers a curve
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    _save(fig, path)


def plot_confusion(
    counts: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, subtitle: str = ""
) -> None:
    """The confusion matrix normalised per true class (each row sums to 1, the recall on the
    diagonal), class names on both axes; the figure grows with the number of classes."""
    matrix = np.asarray(counts, dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    n = len(class_names)
    annotated = n <= MAX_ANNOTATED_CELLS
    # ~0.16 inch (19 px) per class keeps 130 names legible at 6 pt; an annotated cell needs
    # ~0.3 inch, the width of "0.42" at 7 pt; small sets get a normal figure.
    side = max(6.0, (0.3 if annotated else 0.16) * n + 3.0)
    font = 10 if n <= 15 else max(6, int(10 - n / 20))
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    ax.set_xticks(
        range(n),
        labels=class_names,
        rotation=90 if n > 10 else 45,
        ha="center" if n > 10 else "right",
        fontsize=font,
    )
    ax.set_yticks(range(n), labels=class_names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(_title("Confusion matrix (normalised per true class)", subtitle))
    if annotated:
        for (row, col), value in np.ndenumerate(normalised):
            if value > 0:
                colour = "white" if value > 0.5 else "black"
                ax.text(
                    col,
                    row,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    color=colour,
                    fontsize=font - 1,
                )
    _save(fig, path)
