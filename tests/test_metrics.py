"""Metric maths on a case worked out by hand, through the real ImageClassifier and Trainer."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mbv3_lightning.runs.files import best_epoch, read_curves
from mbv3_lightning.training.metrics import (
    build_report,
    curve_corners,
    report_metrics,
    stage_metrics,
)
from mbv3_lightning.training.module import ImageClassifier

# Six test images of three classes with these predicted probabilities (rows sum to 1, so the
# logits log(p) give back exactly p after the classifier's softmax). No score ties anywhere.
TARGETS = [0, 0, 1, 1, 2, 2]
PROBS = [
    [0.60, 0.30, 0.10],
    [0.30, 0.45, 0.25],  # class 0 image, predicted 1
    [0.50, 0.40, 0.10],  # class 1 image, predicted 0
    [0.20, 0.70, 0.10],
    [0.10, 0.20, 0.70],
    [0.15, 0.25, 0.60],
]
# One-vs-rest AUROC = share of (positive, negative) pairs ranked correctly, 2 x 4 pairs each:
#   class 0: 0.60 beats all 4 negatives, 0.30 loses only to 0.50           -> 7/8
#   class 1: 0.70 beats all 4, 0.40 loses only to 0.45                     -> 7/8
#   class 2: 0.70 and 0.60 beat every negative (<= 0.25)                    -> 8/8
HAND_AUROC = {"class_0": 7 / 8, "class_1": 7 / 8, "class_2": 1.0}
HAND_MACRO_AUROC = (7 / 8 + 7 / 8 + 1.0) / 3


def _test_on_designed_logits(tmp_path: Path) -> tuple[ImageClassifier, dict[str, float]]:
    """The real classifier and Trainer, with the network replaced by the identity so the
    'images' fed in are the logits themselves."""
    model = ImageClassifier(
        {"arch": "mobilenet_v3_small"},
        3,
        class_names=["class_0", "class_1", "class_2"],
        optimizer=None,
        scheduler=None,
    )
    model.net = nn.Identity()
    logits = torch.tensor(PROBS).log()
    loader = DataLoader(TensorDataset(logits, torch.tensor(TARGETS)), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    return model, trainer.test(model, dataloaders=loader, verbose=False)[0]


def test_test_metrics_equal_the_values_worked_out_by_hand(tmp_path):
    model, results = _test_on_designed_logits(tmp_path)
    assert results["test/auroc"] == pytest.approx(HAND_MACRO_AUROC)
    assert results["test/acc"] == pytest.approx(4 / 6)  # images 1 and 2 are misclassified
    # Class 0 and 1: 1 of 2 predictions right, 1 of 2 images found; class 2: both perfect.
    assert results["test/precision"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert results["test/recall"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert results["test/f1"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    # Specificity: of the 4 images outside class 0 (and 1), one was predicted as it.
    assert results["test/specificity"] == pytest.approx((3 / 4 + 3 / 4 + 1) / 3)
    assert results["test/loss"] == pytest.approx(
        -sum(math.log(PROBS[i][t]) for i, t in enumerate(TARGETS)) / 6, rel=1e-5
    )
    assert "test/acc_top5" not in results  # only with more than five classes

    report = model.test_report
    assert [row["class"] for row in report.per_class] == ["class_0", "class_1", "class_2"]
    assert [row["support"] for row in report.per_class] == [2, 2, 2]
    assert report.per_class[2] == {
        "class": "class_2",
        "precision": 1.0,
        "recall": 1.0,
        "specificity": 1.0,
        "f1": 1.0,
        "support": 2,
    }
    assert report.confusion == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    for name, value in HAND_AUROC.items():
        assert report.roc["classes"][name]["auc"] == pytest.approx(value)
    # Class 2 is separated perfectly: its ROC curve goes straight up, then straight across.
    assert report.roc["classes"]["class_2"]["fpr"] == [0.0, 0.0, 1.0]
    assert report.roc["classes"]["class_2"]["tpr"] == [0.0, 1.0, 1.0]
    assert report.roc["macro"]["auc"] == pytest.approx(HAND_MACRO_AUROC)
    assert 0.5 < report.roc["micro"]["auc"] <= 1.0


def test_top5_accuracy_only_with_more_than_five_classes():
    # (a MetricCollection's `in` looks up names without the prefix; keys() carries it)
    assert "val/acc_top5" not in set(stage_metrics(5, "val").keys())
    assert "test/acc_top5" in set(stage_metrics(6, "test").keys())
    assert set(stage_metrics(6, "train").keys()) == {"train/acc", "train/auroc", "train/acc_top5"}


def test_curve_corners_drop_only_points_on_straight_segments():
    fpr = torch.tensor([0.0, 0.0, 0.0, 0.25, 0.5, 1.0])
    tpr = torch.tensor([0.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    assert curve_corners(fpr, tpr) == ([0.0, 0.0, 1.0], [0.0, 1.0, 1.0])
    # A repeated point is not a straight segment: the corner next to it stays.
    fpr, tpr = torch.tensor([0.0, 0.0, 0.0, 1.0]), torch.tensor([0.0, 0.5, 0.5, 0.5])
    assert curve_corners(fpr, tpr) == ([0.0, 0.0, 1.0], [0.0, 0.5, 0.5])


def test_macro_roc_runs_from_origin_to_corner_when_a_class_ties_at_the_bottom():
    """Class 2's two images score below every other image, whose class-2 scores all tie: its
    curve rises only at FPR 1, which torchmetrics' macro average dropped (ending at 0.67)."""
    probs = torch.tensor(
        [
            [0.6, 0.1, 0.3],
            [0.1, 0.6, 0.3],
            [0.5, 0.4, 0.1],
            [0.6, 0.1, 0.3],
            [0.1, 0.6, 0.3],
            [0.45, 0.45, 0.1],
        ]
    )
    metrics = report_metrics(3)
    metrics.update(probs, torch.tensor([0, 1, 2, 0, 1, 2]))
    roc = build_report(metrics.compute(), ["a", "b", "c"], macro_auroc=2 / 3).roc
    assert roc["classes"]["c"] == {"fpr": [0.0, 1.0, 1.0], "tpr": [0.0, 0.0, 1.0], "auc": 0.0}
    # Classes a and b are perfect (TPR 1 from FPR 0), c is at 0 until FPR 1: mean 2/3.
    assert roc["macro"]["fpr"] == [0.0, 0.0, 1.0, 1.0]
    assert roc["macro"]["tpr"] == pytest.approx([0.0, 2 / 3, 2 / 3, 1.0], abs=1e-6)


# What Lightning's CSV logger wrote for a run of 2 epochs resumed once from epoch 1's start:
# the learning-rate monitor's rows carry no epoch, epoch 1 appears twice, and the test row
# comes last with the epoch after the final one.
RESUMED_METRICS_CSV = """\
epoch,lr-AdamW,step,test/acc,train/acc,train/loss,val/acc,val/loss
,0.001,0,,,,,
0,,1,,,,0.4,1.2
0,,1,,0.3,1.3,,
,0.002,2,,,,,
1,,3,,,,0.5,1.1
,0.002,2,,,,,
1,,3,,,,0.6,1.0
1,,3,,0.7,0.9,,
2,,4,0.65,,,,
"""


def test_curves_have_one_row_per_epoch_and_the_resumed_values_win(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(RESUMED_METRICS_CSV)
    curves = read_curves(path)
    assert curves == [
        {
            "epoch": 0,
            "train/loss": 1.3,
            "train/acc": 0.3,
            "val/loss": 1.2,
            "val/acc": 0.4,
            "lr": 0.001,
        },
        {
            "epoch": 1,
            "train/loss": 0.9,
            "train/acc": 0.7,
            "val/loss": 1.0,
            "val/acc": 0.6,
            "lr": 0.002,
        },
    ]
    assert best_epoch(curves) == 1
    assert read_curves(tmp_path / "missing.csv") == []


def test_per_class_scores_from_a_confusion_matrix_match_torchmetrics():
    """The per-epoch table is computed from one confusion matrix; it must give torchmetrics'
    own per-class numbers, a class that is never predicted (precision 0) included."""
    from torchmetrics.classification import (
        MulticlassConfusionMatrix,
        MulticlassF1Score,
        MulticlassPrecision,
        MulticlassRecall,
        MulticlassSpecificity,
    )

    from mbv3_lightning.training.metrics import per_class_from_confusion

    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (200,), generator=generator)
    probs = torch.rand(200, 4, generator=generator)
    probs[:, 3] = 0.0  # class 3 is never predicted
    names = ["a", "b", "c", "d"]
    rows = per_class_from_confusion(MulticlassConfusionMatrix(4)(probs, targets), names)
    expected = {
        "precision": MulticlassPrecision(4, average=None)(probs, targets),
        "recall": MulticlassRecall(4, average=None)(probs, targets),
        "specificity": MulticlassSpecificity(4, average=None)(probs, targets),
        "f1": MulticlassF1Score(4, average=None)(probs, targets),
    }
    for i, row in enumerate(rows):
        assert row["class"] == names[i] and row["support"] == int((targets == i).sum())
        for key, values in expected.items():
            assert row[key] == pytest.approx(float(values[i]), abs=1e-6), (names[i], key)
    assert rows[3]["precision"] == 0.0 and rows[3]["recall"] == 0.0
