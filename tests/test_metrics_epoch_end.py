"""Metrics computed from the step outputs gathered over an epoch equal the per-step updates.

The classifier keeps each step's probabilities, targets and loss and updates every metric at
epoch end (training/metrics.py, EpochOutputs). A reference subclass also updates the same
torchmetrics collections at every step and logs the loss with Lightning's own per-step epoch
mean, the way the classifier did before; on a real fit (real Hydra config, images on disk,
Trainer, torchmetrics) every value must be the same, to the last bit.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torchmetrics.classification import MulticlassConfusionMatrix

from mbv3_lightning.training.metrics import EpochOutputs, build_report, report_metrics
from mbv3_lightning.training.module import ImageClassifier
from mbv3_lightning.training.run import build_components

from .conftest import FAST_OVERRIDES, write_image

# Seven classes, so top-5 accuracy is among the metrics (it needs more than five).
COLOURS = [
    (220, 40, 40),
    (40, 200, 60),
    (50, 70, 230),
    (230, 210, 40),
    (160, 60, 200),
    (40, 200, 210),
    (120, 120, 120),
]


class PerStepReference(ImageClassifier):
    """The classifier plus its metrics the per-step way, logged under ``ref/<stage>/...``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        n = self.hparams.num_classes
        # Keys "<stage>_ref": a ModuleDict key may not be "train", a Module method.
        self.ref_metrics = nn.ModuleDict(
            {
                f"{s}_ref": getattr(self, f"{s}_metrics").clone(prefix=f"ref/{s}/")
                for s in ("train", "val", "test")
            }
        )
        self.ref_confusion = nn.ModuleDict(
            {f"{s}_ref": MulticlassConfusionMatrix(num_classes=n) for s in ("train", "val")}
        )
        self.ref_report_metrics = report_metrics(n)
        self.ref_confusions: list[dict[str, Any]] = []
        self.ref_test_report = None

    def compute_loss(self, outputs: Any, targets: torch.Tensor, stage: str) -> Any:
        loss, logits = super().compute_loss(outputs, targets, stage)
        probs = logits.detach().float().softmax(dim=1)
        self.ref_metrics[f"{stage}_ref"].update(probs, targets)
        if f"{stage}_ref" in self.ref_confusion:
            self.ref_confusion[f"{stage}_ref"].update(probs, targets)
        else:
            self.ref_report_metrics.update(probs, targets)
        self.log(f"ref/{stage}/loss", loss, on_step=False, on_epoch=True, batch_size=len(targets))
        return loss, logits

    def _log_reference(self, stage: str) -> dict[str, torch.Tensor]:
        values = self.ref_metrics[f"{stage}_ref"].compute()
        self.ref_metrics[f"{stage}_ref"].reset()
        self.log_dict(values)
        if f"{stage}_ref" in self.ref_confusion:
            confusion = self.ref_confusion[f"{stage}_ref"].compute().long().cpu()
            self.ref_confusion[f"{stage}_ref"].reset()
            if not self.trainer.sanity_checking:
                self.ref_confusions.append(
                    {"epoch": self.current_epoch, "stage": stage, "confusion": confusion.tolist()}
                )
        return values

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self._log_reference("train")

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_reference("val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        values = self._log_reference("test")
        self.ref_test_report = build_report(
            self.ref_report_metrics.compute(), self.class_names, float(values["ref/test/auroc"])
        )


def _image_folder(root: Path) -> Path:
    splits = {"train": 8, "val": 3, "test": 3}
    for c, colour in enumerate(COLOURS):
        for split, count in splits.items():
            for i in range(count):
                write_image(root / split / f"class_{c}" / f"{i:03d}.jpg", colour, seed=100 * c + i)
    return root


@pytest.fixture
def one_thread():
    """One intra-op thread for a fit on 32-px images: a second thread gains nothing on such
    small tensors, and on a busy shared CPU waiting for it made this test twenty times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_epoch_end_metrics_equal_per_step_updates_on_a_real_fit(compose_cfg, tmp_path, monkeypatch):
    # Several updates per epoch end (train: 56 images), so the chunked path is the one tested.
    monkeypatch.setattr(EpochOutputs, "CHUNK", 16)
    root = _image_folder(tmp_path / "data")
    out = tmp_path / "run"
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={root}",
            *FAST_OVERRIDES,
            "model.input_size=32",
            "trainer.max_epochs=2",
            "trainer.deterministic=true",
            f"model._target_={PerStepReference.__module__}.{PerStepReference.__qualname__}",
        ],
        out,
    )
    datamodule, model, callbacks, loggers = build_components(cfg)
    assert isinstance(model, PerStepReference)
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=datamodule)
    results = trainer.test(model, datamodule=datamodule, verbose=False)[0]

    # Every per-epoch value in metrics.csv, as text: equal strings are equal float32 bits.
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    compared = 0
    for row in rows:
        for key, value in row.items():
            if key.startswith("ref/") and value:
                assert row[key.removeprefix("ref/")] == value, (key, row)
                compared += 1
    # train: loss, acc, top-5, AUROC; val: those and precision, recall, specificity, F1
    assert {k.removeprefix("ref/") for k in rows[0] if k.startswith("ref/")} >= {
        "train/loss",
        "train/acc",
        "train/acc_top5",
        "train/auroc",
        "val/loss",
        "val/acc",
        "val/auroc",
        "val/f1",
    }
    assert compared >= 2 * (4 + 8)  # two epochs of train and val values
    # No degenerate values: the network learns between epochs and ranks classes imperfectly.
    train_losses = [float(row["train/loss"]) for row in rows if row["train/loss"]]
    assert len(train_losses) == 2 and train_losses[1] != train_losses[0]
    assert all(0.0 < float(row["val/auroc"]) < 1.0 for row in rows if row["val/auroc"])

    for key, value in results.items():
        if key.startswith("ref/"):
            assert results[key.removeprefix("ref/")] == value, key
    assert model.epoch_confusions == model.ref_confusions
    assert len(model.epoch_confusions) == 4  # train and val of both epochs
    assert model.test_report == model.ref_test_report
    assert sum(row["support"] for row in model.test_report.per_class) == 7 * 3
    # Nothing is left over for the next epoch.
    assert all(not outputs.probs for outputs in model.epoch_outputs.values())


def test_epoch_outputs_loss_is_lightnings_weighted_mean():
    outputs = EpochOutputs()
    assert outputs.mean_loss() is None
    outputs.add(torch.rand(3, 4), torch.tensor([0, 1, 2]), torch.tensor(2.0))
    outputs.add(torch.rand(1, 4), torch.tensor([3]), torch.tensor(6.0, dtype=torch.bfloat16))
    mean = outputs.mean_loss()
    assert mean.dtype == torch.float32  # a 16-bit loss is averaged in float32, as Lightning does
    assert mean.item() == (3 * 2.0 + 1 * 6.0) / 4
    outputs.reset()
    assert outputs.mean_loss() is None and not outputs.probs
