"""ImageClassifier: the Lightning system (loss, metrics, optimiser) around a registry network."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch.optim import Optimizer
from torchmetrics import MaxMetric, Metric, MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from mbv3_lightning.models.freeze import freeze as freeze_net
from mbv3_lightning.models.freeze import hold_frozen_batchnorm
from mbv3_lightning.models.hparams import build_net, checked_hparams
from mbv3_lightning.models.memory_format import CHANNELS_LAST_CHOICES, batch_memory_format
from mbv3_lightning.models.registry import count_parameters, get_spec
from mbv3_lightning.models.safe_load import load_checkpoint
from mbv3_lightning.runs.record import EvaluationReport
from mbv3_lightning.tracking.logger import ProjectWandbLogger
from mbv3_lightning.training.metrics import (
    EpochOutputs,
    build_report,
    per_class_from_confusion,
    report_metrics,
    stage_metrics,
)
from mbv3_lightning.training.optim import make_optimizer, make_scheduler, node_factory


def _plain(node: Any) -> Any:
    """A config node (DictConfig or dict) as plain, resolved Python data for the hparams."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node) if isinstance(node, Mapping) else node


class ImageClassifier(L.LightningModule):
    """Fine-tunes or trains any registered architecture for ``num_classes`` classes.

    ``net`` is the ``model.net`` config node (``arch`` plus the registry builder's keyword
    arguments); ``optimizer`` and ``scheduler`` are ``_partial_`` nodes (or factories) that
    :meth:`configure_optimizers` completes, given explicitly (``None``: no optimiser, a model
    that only predicts; no schedule). The other defaults are the config's (a test compares
    them with ``conf/``). All three are saved, as plain data, in the
    checkpoint's hyper-parameters together with the classes, input size and the image
    preparation (``preprocess``, the dataset's: predict and exports prepare images as
    evaluation did), so a checkpoint rebuilds from them alone (:meth:`load_from_checkpoint`).
    """

    # buffers and submodules set in __init__ (register_buffer hides the types from a checker)
    class_weights: torch.Tensor | None
    net: torch.nn.Module
    train_confusion: MulticlassConfusionMatrix
    val_confusion: MulticlassConfusionMatrix
    test_report_metrics: MetricCollection

    def __init__(
        self,
        net: Mapping[str, Any],
        num_classes: int,
        *,
        class_names: list[str] | None = None,
        input_size: int | None = None,
        optimizer: Mapping[str, Any] | Callable[..., Optimizer] | None,
        scheduler: Mapping[str, Any] | Callable[..., Any] | None,
        label_smoothing: float = 0.1,
        freeze: str | int | None = "none",
        class_weights: list[float] | None = None,
        channels_last: bool | str = "auto",
        preprocess: str = "augment",
    ) -> None:
        super().__init__()
        net, optimizer, scheduler = _plain(net), _plain(optimizer), _plain(scheduler)
        if "arch" not in net:
            raise ValueError("model.net needs `arch`, the registry name of the architecture.")
        spec = get_spec(net["arch"])
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Got {len(class_names)} class names for {num_classes} classes.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}.")
        if not any(
            channels_last == c and type(channels_last) is type(c) for c in CHANNELS_LAST_CHOICES
        ):
            raise ValueError(f"channels_last must be true, false or auto, got {channels_last!r}.")
        # Factories passed in code (not config) are no data to save; their nodes are None then.
        factories = (("optimizer", optimizer), ("scheduler", scheduler))
        self.save_hyperparameters(ignore=[name for name, value in factories if callable(value)])
        self.arch = spec.name
        self.input_size = input_size or spec.input_size
        self.mean, self.std = spec.mean, spec.std
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.net = build_net(net, num_classes)
        # Layout of training and evaluation batches: auto is resolved for the trainer's device
        # in setup(); the CPU's choice until then.
        self.memory_format = batch_memory_format(channels_last, "cpu")
        freeze_net(self.net, spec, freeze)
        self.optimizer_cfg = optimizer
        self.scheduler_cfg = scheduler
        # One collection per stage (attributes, not a ModuleDict: "train" is a Module method).
        self.train_metrics = stage_metrics(num_classes, "train")
        self.val_metrics = stage_metrics(num_classes, "val")
        self.test_metrics = stage_metrics(num_classes, "test")
        self.val_acc_best = MaxMetric()
        # What each stage's steps keep for its epoch end, where every metric below is updated
        # from them (a step only runs the network, the loss and a softmax).
        self.epoch_outputs = {stage: EpochOutputs() for stage in ("train", "val", "test")}
        # One confusion matrix per fitting stage, from which the per-class scores of every
        # epoch are computed at epoch end (see `epoch_confusions`).
        self.train_confusion = MulticlassConfusionMatrix(num_classes=num_classes)
        self.val_confusion = MulticlassConfusionMatrix(num_classes=num_classes)
        # {"epoch", "stage", "confusion"} per finished train/val epoch; saved in checkpoints
        # so a resumed run keeps the epochs before the resume.
        self.epoch_confusions: list[dict[str, Any]] = []
        # Per-class scores, ROC curves and confusion matrix of the last test run; the run's file
        # writer reads `test_report` once `trainer.test` has returned.
        self.test_report_metrics = report_metrics(num_classes)
        self.test_report: EvaluationReport | None = None
        # Training-loss weights per class (`dataset.balance=weights`); not saved as state, the
        # hyper-parameters already hold them.
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        # In checkpoints, so a run resumed from last.ckpt remembers the best it had reached.
        self.val_acc_best.persistent(True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device
        self.memory_format = batch_memory_format(self.hparams["channels_last"], device)
        self.net.to(memory_format=self.memory_format)

    def train(self, mode: bool = True) -> ImageClassifier:
        """Train mode everywhere except the BatchNorm layers of frozen blocks."""
        super().train(mode)
        hold_frozen_batchnorm(self.net)
        return self

    def on_train_epoch_start(self) -> None:
        # Lightning does not call train() itself: it keeps (and restores after validation)
        # each submodule's mode, so the frozen BatchNorm layers are set to eval here.
        hold_frozen_batchnorm(self.net)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The checkpoint holds every weight, so rebuilding it (load_from_checkpoint) must not
        # need the ImageNet file or weights_path again. Lightning stores a shallow copy of
        # hparams here: the nested net node is replaced, not edited, to leave self.hparams be.
        hparams = checkpoint["hyper_parameters"]
        hparams["net"] = {**hparams["net"], "pretrained": False, "weights_path": None}
        checkpoint["epoch_confusions"] = list(self.epoch_confusions)
        # Inside an epoch (a preemption or step checkpoint): the training outputs so far, so
        # the resumed epoch's scores count every batch. Empty at an epoch's end.
        if self.epoch_outputs["train"].images:
            checkpoint["train_epoch_outputs"] = self.epoch_outputs["train"].state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.epoch_confusions = list(checkpoint.get("epoch_confusions", []))
        outputs = checkpoint.get("train_epoch_outputs")
        if outputs is not None:
            self.epoch_outputs["train"].load(outputs)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls, checkpoint_path: str | Path, map_location: Any = "cpu", **_: Any
    ) -> Any:
        """The module a checkpoint of this project holds, rebuilt from its checked plain
        hyper-parameters (:func:`checked_hparams`), never by Lightning's loader, which passes
        them on as they are."""
        checkpoint = load_checkpoint(checkpoint_path)
        model = cls(**checked_hparams(checkpoint.get("hyper_parameters"), checkpoint_path))
        model.on_load_checkpoint(checkpoint)
        model.load_state_dict(checkpoint["state_dict"])
        return model.to(map_location)

    def compute_loss(
        self, outputs: Any, targets: torch.Tensor, stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss and the logits the metrics see.

        Architectures that train differently (e.g. an auxiliary head) override only this.
        """
        smoothing = self.hparams["label_smoothing"] if stage == "train" else 0.0
        weight = self.class_weights if stage == "train" else None
        loss = F.cross_entropy(outputs, targets, weight=weight, label_smoothing=smoothing)
        return loss, outputs

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, targets = batch
        if images.ndim == 4:  # image batches; other inputs (e.g. features) keep their layout
            images = images.contiguous(memory_format=self.memory_format)
        loss, logits = self.compute_loss(self(images), targets, stage)
        probs = logits.detach().float().softmax(dim=1)
        self.epoch_outputs[stage].add(probs, targets, loss)
        return loss

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def _metrics(self, stage: str) -> MetricCollection:
        return getattr(self, f"{stage}_metrics")

    def _log_epoch_metrics(self, stage: str) -> dict[str, torch.Tensor]:
        """Update the stage's metrics from its kept step outputs, then log their values."""
        outputs = self.epoch_outputs[stage]
        loss = outputs.mean_loss()
        if loss is not None:
            # batch_size=1: already the epoch's mean, logged once, kept as it is
            self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=1)
        extras: dict[str, Metric | MetricCollection] = {
            "train": self.train_confusion,
            "val": self.val_confusion,
            "test": self.test_report_metrics,
        }
        outputs.update(self._metrics(stage), extras[stage])
        outputs.reset()
        values = self._metrics(stage).compute()
        self._metrics(stage).reset()
        self.log_dict(values, prog_bar=True)
        return values

    def _log_per_class(self, stage: str) -> None:
        """This epoch's per-class scores from the stage's confusion matrix: the macro means
        for train (val has torchmetrics' own), the matrix kept for the run's files, and every
        class's scores as W&B scalars where ``logger.wandb.per_class_scalars`` asks for them."""
        metric = getattr(self, f"{stage}_confusion")
        confusion = metric.compute().long().cpu()
        metric.reset()
        rows = per_class_from_confusion(confusion, self.class_names)
        if stage == "train":
            means = {
                f"train/{key}": sum(row[key] for row in rows) / len(rows)
                for key in ("precision", "recall", "specificity", "f1")
            }
            self.log_dict(means)
        self.epoch_confusions.append(
            {"epoch": self.current_epoch, "stage": stage, "confusion": confusion.tolist()}
        )
        for logger in self.loggers:
            if isinstance(logger, ProjectWandbLogger):
                logger.log_per_class(stage, rows, self.current_epoch, self.global_step)

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")
        self._log_per_class("train")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            # Its few batches only check that validation runs: their scores count for nothing,
            # and on a class-sorted validation set AUROC over the classes they lack warned.
            self.epoch_outputs["val"].reset()
            return
        values = self._log_epoch_metrics("val")
        self._log_per_class("val")
        self.val_acc_best(values["val/acc"])
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        values = self._log_epoch_metrics("test")
        self.test_report = build_report(
            self.test_report_metrics.compute(), self.class_names, float(values["test/auroc"])
        )
        self.test_report_metrics.reset()

    def configure_optimizers(self) -> Any:
        """The optimiser partial called with the trainable parameters (fused where possible)
        and the schedule partial with the optimiser and this run's step counts; stepped every
        batch unless the scheduler node says ``interval: epoch``."""
        if self.optimizer_cfg is None:
            raise ValueError(
                "This ImageClassifier was built without an optimizer (optimizer=None), so it "
                "cannot train; pass a conf/optimizer/ node or a factory such as "
                "functools.partial(torch.optim.AdamW, lr=0.003)."
            )
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = make_optimizer(node_factory(self.optimizer_cfg), trainable)
        if self.scheduler_cfg is None:
            return optimizer
        node = self.scheduler_cfg
        interval = "step"
        if isinstance(node, Mapping):
            node = dict(node)
            interval = node.pop("interval", "step")
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total_steps // max(1, self.trainer.max_epochs or 1))
        scheduler = make_scheduler(
            node_factory(node),
            optimizer,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }

    def parameter_counts(self) -> dict[str, int]:
        """Total and trainable parameters of the network (the run log and reports use these)."""
        return {
            "params_total": count_parameters(self.net),
            "params_trainable": count_parameters(self.net, trainable_only=True),
        }
