"""ImageClassifier: the Lightning system (loss, metrics, optimiser) around a registry network."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MaxMetric, MetricCollection

from mbv3_lightning.metrics import stage_metrics
from mbv3_lightning.models.optim import build_optimizer, build_scheduler
from mbv3_lightning.models.registry import count_parameters, create_model, get_spec


class ImageClassifier(L.LightningModule):
    """Fine-tunes or trains any registered architecture for ``num_classes`` classes.

    Everything needed to rebuild the network and preprocess an image (architecture,
    classes, input size, normalisation) is saved in the checkpoint's hyper-parameters.
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        *,
        class_names: list[str] | None = None,
        input_size: int | None = None,
        bn_momentum: float | None = 0.1,
        label_smoothing: float = 0.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        **arch_kwargs: Any,
    ) -> None:
        super().__init__()
        spec = get_spec(arch)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"Got {len(class_names)} class names for {num_classes} classes.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.save_hyperparameters()
        self.input_size = input_size or spec.input_size
        self.mean, self.std = spec.mean, spec.std
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.net = create_model(arch, num_classes, bn_momentum=bn_momentum, **arch_kwargs)
        self.optimizer_cfg = optimizer or {"name": "adamw", "lr": 1e-3}
        self.scheduler_cfg = scheduler or {"name": "none"}
        # One collection per stage (attributes, not a ModuleDict: "train" is a Module method).
        self.train_metrics = stage_metrics(num_classes, "train")
        self.val_metrics = stage_metrics(num_classes, "val")
        self.test_metrics = stage_metrics(num_classes, "test")
        self.val_acc_best = MaxMetric()
        # In checkpoints, so a run resumed from last.ckpt remembers the best it had reached.
        self.val_acc_best.persistent(True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def compute_loss(
        self, outputs: Any, targets: torch.Tensor, stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss and the logits the metrics see.

        Architectures that train differently (e.g. an auxiliary head) override only this.
        """
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0
        return F.cross_entropy(outputs, targets, label_smoothing=smoothing), outputs

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        images, targets = batch
        loss, logits = self.compute_loss(self(images), targets, stage)
        self._metrics(stage).update(logits.detach().float().softmax(dim=1), targets)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(targets),
        )
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
        values = self._metrics(stage).compute()
        self._metrics(stage).reset()
        self.log_dict(values, prog_bar=True)
        return values

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch_metrics("val")
        if self.trainer.sanity_checking:
            return  # its few batches must not count towards the best accuracy
        self.val_acc_best(values["val/acc"])
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = build_optimizer(trainable, **self.optimizer_cfg)
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(1, total_steps // max(1, self.trainer.max_epochs or 1))
        scheduler = build_scheduler(
            optimizer,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            **self.scheduler_cfg,
        )
        if scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def parameter_counts(self) -> dict[str, int]:
        """Total and trainable parameters of the network (the run log and reports use these)."""
        return {
            "params_total": count_parameters(self.net),
            "params_trainable": count_parameters(self.net, trainable_only=True),
        }
