"""torchmetrics collections per stage, keyed `stage/metric` (`val/acc`, `test/auroc`).

Every number here comes from torchmetrics; this module only chooses the metrics and turns the
non-scalar test results (per-class table, ROC curves, confusion matrix) into plain Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MulticlassROC,
    MulticlassSpecificity,
)
from torchmetrics.utilities.compute import auc

from mbv3_lightning.runs.record import EvaluationReport

__all__ = [
    "EpochOutputs",
    "build_report",
    "curve_corners",
    "per_class_epoch_rows",
    "per_class_from_confusion",
    "report_metrics",
    "stage_metrics",
]

# Top-5 accuracy only means something when there are clearly more than five classes.
TOP5_MIN_CLASSES = 6

_CLASSWISE: dict[str, type[Metric]] = {
    "precision": MulticlassPrecision,
    "recall": MulticlassRecall,
    "specificity": MulticlassSpecificity,
    "f1": MulticlassF1Score,
}


class EpochOutputs:
    """One stage's step outputs, kept until its epoch ends: class probabilities, targets and
    the loss summed over images.

    Every metric of the epoch (accuracy, AUROC, F1, the confusion matrix, the test report) is
    updated from these once, at epoch end, instead of at every step: per-step updates of every
    collection (several small operators and argument checks each, and on a GPU a wait for
    the device) were most of the framework's cost per step with a small network. The values
    are the same: every metric here sums counts over images, except AUROC and the ROC curves,
    which kept every prediction anyway; and the loss is averaged exactly as Lightning averages
    a value logged with ``on_epoch=True``. Memory is what AUROC's state already held (one
    probability per image and class).
    """

    # Rows per metric update at epoch end: bounds the temporaries a metric makes per update
    # (top-5 accuracy one-hot encodes its input) on large epochs.
    CHUNK = 8192

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.probs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.images = 0
        self.loss_sum: torch.Tensor | None = None

    def add(self, probs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        """Keep one step's outputs (detached: no autograd graph outlives its step)."""
        self.probs.append(probs.detach())
        self.targets.append(targets.detach())
        # Lightning's `self.log(..., on_epoch=True)` mean: float32 (or float64) sum of the
        # loss times the batch size, divided by the number of images.
        value = loss.detach()
        if value.dtype not in (torch.float32, torch.float64):
            value = value.to(torch.float32)
        if self.loss_sum is not None and self.loss_sum.device != value.device:
            # outputs restored from a checkpoint (on the CPU), before the first new step
            self.probs = [p.to(value.device) for p in self.probs]
            self.targets = [t.to(value.device) for t in self.targets]
            self.loss_sum = self.loss_sum.to(value.device)
        weighted = value * len(targets)
        self.loss_sum = weighted if self.loss_sum is None else self.loss_sum + weighted
        self.images += len(targets)

    def state(self) -> dict[str, Any]:
        """What was kept so far, as tensors: saved in a checkpoint written inside an epoch, so
        the resumed epoch's metrics count the batches trained before it too."""
        return {
            "probs": [p.cpu() for p in self.probs],
            "targets": [t.cpu() for t in self.targets],
            "images": self.images,
            "loss_sum": None if self.loss_sum is None else self.loss_sum.cpu(),
        }

    def load(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state`; the next :meth:`add` moves it to its steps' device."""
        self.probs, self.targets = list(state["probs"]), list(state["targets"])
        self.images = int(state["images"])
        self.loss_sum = state["loss_sum"]

    def mean_loss(self) -> torch.Tensor | None:
        """The loss averaged over the epoch's images; None when the epoch had no step."""
        if self.loss_sum is None:
            return None
        # Divided by a count tensor on the loss's device, as Lightning divides: on a GPU a
        # division by a Python number multiplies by its reciprocal (last bit may differ).
        return self.loss_sum / torch.tensor(self.images, device=self.loss_sum.device)

    def update(self, *metrics: Metric | MetricCollection) -> None:
        """Update ``metrics`` with every kept (probabilities, targets) pair, in large chunks."""
        if not self.probs:
            return
        probs, targets = torch.cat(self.probs), torch.cat(self.targets)
        for start in range(0, len(targets), self.CHUNK):
            chunk = slice(start, start + self.CHUNK)
            for metric in metrics:
                metric.update(probs[chunk], targets[chunk])


def stage_metrics(num_classes: int, stage: str) -> MetricCollection:
    """Scalars logged per epoch: top-1 accuracy (micro: the share of correct images), top-5
    accuracy (> 5 classes), macro one-vs-rest AUROC, and for val/test the macro means of
    precision, recall, specificity and F1."""
    metrics: dict[str, Metric | MetricCollection] = {
        "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
        "auroc": MulticlassAUROC(num_classes=num_classes, average="macro"),
    }
    if num_classes >= TOP5_MIN_CLASSES:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro")
    if stage != "train":
        for name, metric_cls in _CLASSWISE.items():
            metrics[name] = metric_cls(num_classes=num_classes, average="macro")
    return MetricCollection(metrics, prefix=f"{stage}/")


def report_metrics(num_classes: int) -> MetricCollection:
    """Non-scalar test results: per-class scores, ROC curves (per class, micro, macro) and
    the confusion matrix (counts; rows are true classes)."""
    return MetricCollection(
        {
            **{
                name: metric_cls(num_classes=num_classes, average=None)
                for name, metric_cls in _CLASSWISE.items()
            },
            "auroc": MulticlassAUROC(num_classes=num_classes, average=None),
            "roc": MulticlassROC(num_classes=num_classes),
            "roc_micro": MulticlassROC(num_classes=num_classes, average="micro"),
            "roc_macro": MulticlassROC(num_classes=num_classes, average="macro"),
            "confusion": MulticlassConfusionMatrix(num_classes=num_classes),
        }
    )


def curve_corners(fpr: torch.Tensor, tpr: torch.Tensor) -> tuple[list[float], list[float]]:
    """The ROC polyline without the points that lie on a straight segment between their
    neighbours: the same curve, but a few dozen points instead of one per test image."""
    x, y = fpr.double().cpu().numpy(), tpr.double().cpu().numpy()
    # Repeated points first (torchmetrics' macro curve has runs of them): next to a copy of
    # itself a corner looks collinear and would be dropped.
    distinct = np.concatenate([[True], (np.diff(x) != 0) | (np.diff(y) != 0)])
    x, y = x[distinct], y[distinct]
    if len(x) <= 2:
        return x.tolist(), y.tolist()
    cross = (x[1:-1] - x[:-2]) * (y[2:] - y[1:-1]) - (y[1:-1] - y[:-2]) * (x[2:] - x[1:-1])
    keep = np.concatenate([[True], np.abs(cross) > 1e-12, [True]])
    return x[keep].round(6).tolist(), y[keep].round(6).tolist()


def _curve(fpr: torch.Tensor, tpr: torch.Tensor, area: float) -> dict[str, Any]:
    fpr_points, tpr_points = curve_corners(fpr, tpr)
    return {"fpr": fpr_points, "tpr": tpr_points, "auc": area}


def _with_end_points(fpr: torch.Tensor, tpr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The curve from (0, 0) to (1, 1), where every ROC curve runs.

    torchmetrics' macro average interpolates the class curves on a common FPR grid and loses
    a vertical segment at FPR 1, which a class has when its lowest scores tie (e.g. a barely
    trained network scoring every image alike): the average then ended at TPR 0.83.
    """
    fpr, tpr = fpr.double().cpu(), tpr.double().cpu()
    origin, corner = torch.zeros(1, dtype=fpr.dtype), torch.ones(1, dtype=fpr.dtype)
    if fpr[0] != 0 or tpr[0] != 0:
        fpr, tpr = torch.cat([origin, fpr]), torch.cat([origin, tpr])
    if fpr[-1] != 1 or tpr[-1] != 1:
        fpr, tpr = torch.cat([fpr, corner]), torch.cat([tpr, corner])
    return fpr, tpr


def build_report(
    values: dict[str, Any], class_names: list[str], macro_auroc: float
) -> EvaluationReport:
    """Turn ``report_metrics(...).compute()`` into the per-class table, roc.json and
    confusion matrix. ``macro_auroc`` is ``test/auroc`` so every file quotes the same number."""
    confusion = values["confusion"].long().cpu()
    support = confusion.sum(dim=1)  # row sums: test images of each true class
    per_class = [
        {
            "class": name,
            **{key: float(values[key][i]) for key in _CLASSWISE},
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]
    fprs, tprs, _ = values["roc"]
    micro_fpr, micro_tpr, _ = values["roc_micro"]
    macro_fpr, macro_tpr, _ = values["roc_macro"]
    roc = {
        "classes": {
            name: _curve(fprs[i], tprs[i], float(values["auroc"][i]))
            for i, name in enumerate(class_names)
        },
        # micro: every (image, class) pair as one binary decision; its area is the
        # trapezoid area under that exact curve (torchmetrics' auc).
        "micro": _curve(micro_fpr, micro_tpr, float(auc(micro_fpr, micro_tpr))),
        # macro: the mean of the per-class curves on a common FPR grid; its AUC is the mean of
        # the per-class AUCs, i.e. test/auroc.
        "macro": _curve(*_with_end_points(macro_fpr, macro_tpr), macro_auroc),
    }
    return EvaluationReport(
        class_names=list(class_names),
        per_class=per_class,
        roc=roc,
        confusion=confusion.tolist(),
    )


def per_class_from_confusion(
    confusion: torch.Tensor, class_names: list[str]
) -> list[dict[str, Any]]:
    """Precision, recall, specificity, F1 and support per class from a confusion matrix
    (rows = true class), as torchmetrics' per-class scores define them (0 where a ratio has
    no denominator). The per-epoch table uses this: one confusion-matrix update per batch is
    the only per-step cost, the scores follow at epoch end."""
    cm = confusion.double().cpu()
    total = cm.sum()
    tp = cm.diagonal()
    predicted, actual = cm.sum(dim=0), cm.sum(dim=1)
    fp, fn = predicted - tp, actual - tp
    tn = total - tp - fp - fn

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp(min=1e-12), torch.zeros_like(num))

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    specificity = ratio(tn, tn + fp)
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    return [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "specificity": float(specificity[i]),
            "f1": float(f1[i]),
            "support": int(actual[i]),
        }
        for i, name in enumerate(class_names)
    ]


def per_class_epoch_rows(
    epoch_confusions: list[dict[str, Any]], class_names: list[str]
) -> list[dict[str, Any]]:
    """One row per (epoch, stage, class) from the matrices the classifier kept per epoch
    (``ImageClassifier.epoch_confusions``); where a resumed run holds an epoch twice, the
    later matrix wins."""
    latest = {(e["epoch"], e["stage"]): e["confusion"] for e in epoch_confusions}
    return [
        {"epoch": epoch, "stage": stage, **row}
        for (epoch, stage), confusion in sorted(latest.items())
        for row in per_class_from_confusion(torch.tensor(confusion), class_names)
    ]
