"""torchmetrics collections per stage, keyed `stage/metric` (`val/acc`, `test/auroc`)."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC


def stage_metrics(num_classes: int, stage: str) -> MetricCollection:
    """Accuracy (top-1, micro: the share of correct images) and macro one-vs-rest AUROC."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "auroc": MulticlassAUROC(num_classes=num_classes, average="macro"),
        },
        prefix=f"{stage}/",
    )
