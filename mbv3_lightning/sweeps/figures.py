"""The sweep report's figures, one PNG each: the MobileNetV3 image-classification paper's
Figs 4-10 and a Pareto plot.

Every function returns the written path, or ``None`` when no run has the data the figure
needs (e.g. runs that predate ``roc.json``), so the report can say so instead of drawing an
empty axis.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt

from mbv3_lightning.sweeps.results import Group

LATENCY_KEY = "test_ms_per_image"
ACCURACY_KEY = "test/acc"


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _mean_curve(group: Group, column: str) -> tuple[list[float], list[float]]:
    """Per-epoch mean of ``column`` over the group's seeds (epochs all seeds reached)."""
    per_seed = []
    for cell in group.cells:
        points = {int(r["epoch"]): r[column] for r in cell.curves() if column in r}
        if points:
            per_seed.append(points)
    if not per_seed:
        return [], []
    epochs = sorted(set.intersection(*(set(p) for p in per_seed)))
    return [e + 1 for e in epochs], [sum(p[e] for p in per_seed) / len(per_seed) for e in epochs]


def plot_curves(dataset: str, groups: list[Group], path: Path) -> Path | None:
    """Validation accuracy and train/val loss per epoch, one colour per variant (Figs 4/6/8)."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = False
    for i, group in enumerate(groups):
        colour = f"C{i % 10}"
        epochs, acc = _mean_curve(group, "val/acc")
        if epochs:
            ax_acc.plot(epochs, acc, color=colour, marker="o", ms=3, label=group.variant)
            drawn = True
        for column, style in (("val/loss", "-"), ("train/loss", "--")):
            epochs, loss = _mean_curve(group, column)
            if epochs:
                label = f"{group.variant} ({column.split('/')[0]})"
                ax_loss.plot(epochs, loss, style, color=colour, label=label)
    if not drawn:
        plt.close(fig)
        return None
    ax_acc.set(title=f"{dataset}: validation accuracy", xlabel="epoch", ylabel="accuracy")
    ax_loss.set(title=f"{dataset}: cross-entropy loss", xlabel="epoch", ylabel="loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_macro_roc(dataset: str, groups: list[Group], path: Path) -> Path | None:
    """Macro-average ROC of each variant's first seed, AUC in the legend (Figs 5/7/9)."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    drawn = False
    for i, group in enumerate(groups):
        roc = next((r for c in group.cells if (r := c.roc()) and "macro" in r), None)
        if roc is None:
            continue
        macro = roc["macro"]
        label = f"{group.variant} (AUC {macro.get('auc', float('nan')):.3f})"
        ax.plot(macro["fpr"], macro["tpr"], color=f"C{i % 10}", label=label)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(
        title=f"{dataset}: macro-average ROC",
        xlabel="false positive rate",
        ylabel="true positive rate",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


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
    if any(c.metric(LATENCY_KEY) is not None for g in groups for c in g.cells):
        return LATENCY_KEY, "test time per image (ms, batch 1, median)"
    return "params_total", "parameters (test latency not recorded by these runs)"


def plot_test_time(dataset: str, groups: list[Group], path: Path) -> Path | None:
    """Test time per image against test accuracy, one labelled point per variant (Fig 10)."""
    points = _points(groups, LATENCY_KEY)
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for i, (ms, acc, std, name) in enumerate(points):
        ax.errorbar(ms, acc, yerr=std or None, fmt="o", color=f"C{i % 10}", capsize=3)
        ax.annotate(name, (ms, acc), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set(
        title=f"{dataset}: test time vs accuracy",
        xlabel="test time per image (ms)",
        ylabel="test accuracy",
    )
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_pareto(per_dataset: dict[str, list[Group]], path: Path) -> Path | None:
    """Accuracy against cost per dataset; the Pareto front is joined and its points filled."""
    all_groups = [g for groups in per_dataset.values() for g in groups]
    cost_key, cost_label = cost_axis(all_groups)
    panels = {ds: pts for ds, groups in per_dataset.items() if (pts := _points(groups, cost_key))}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    scale = 1e6 if cost_key == "params_total" else 1.0
    for ax, (dataset, points) in zip(axes[0], panels.items(), strict=True):
        xy = [(cost / scale, acc) for cost, acc, _, _ in points]
        front = pareto_front(xy)
        for i, ((x, y), (_, _, std, name)) in enumerate(zip(xy, points, strict=True)):
            on_front = i in front
            ax.errorbar(
                x,
                y,
                yerr=std or None,
                fmt="o",
                mfc=f"C{i % 10}" if on_front else "white",
                color=f"C{i % 10}",
                capsize=3,
                ms=8,
            )
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
        ax.plot(
            [xy[i][0] for i in front],
            [xy[i][1] for i in front],
            "--",
            color="black",
            lw=1,
            label="Pareto front",
        )
        unit = " (M)" if cost_key == "params_total" else ""
        ax.set(title=dataset, xlabel=cost_label + unit, ylabel="test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Accuracy vs cost (filled = on the Pareto front)")
    return _save(fig, path)
