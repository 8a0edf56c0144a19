"""Re-estimate BatchNorm statistics before every evaluation (``callbacks.bn_recalibration``).

Before each validation pass (so the best checkpoint is chosen on what evaluation will use)
and before the test, the running mean and variance of every trainable BatchNorm layer are
reset and re-estimated over a fixed, bounded number of training batches
(:mod:`mbv3_lightning.models.batchnorm`). The checkpoints written after a validation hold
these statistics, so predict, export and the web page serve the network that was evaluated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sized
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset, Subset

from mbv3_lightning.data.image_folder import CALIBRATION_TRANSFORMS
from mbv3_lightning.data.random_state import seeded_rng
from mbv3_lightning.models.batchnorm import (
    average_over_processes,
    estimate_statistics,
    recalibrated_layers,
)

log = logging.getLogger(__name__)


def calibration_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    num_batches: int,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """Up to ``num_batches`` batches of ``batch_size`` training images, the same ones every
    time: a permutation drawn from ``seed``, dealt out between processes like a distributed
    sampler, every process getting the same number of batches (SyncBatchNorm needs every
    process in every forward). Only full batches, as each batch counts equally in the
    average, unless the images make no full batch. Loaded in this process: the
    augmentations then come from the generators :func:`seeded_rng` sets.
    """
    images = len(cast(Sized, dataset))
    order = torch.randperm(images, generator=torch.Generator().manual_seed(seed))
    per_process = images // world_size
    mine = order[rank::world_size][:per_process]
    full_batches = per_process // batch_size
    size = min(num_batches, full_batches) * batch_size if full_batches else per_process
    if size < 2:  # one image has no batch statistics (a 1x1 feature map has no spread)
        size = 0
    return DataLoader(Subset(dataset, mine[:size].tolist()), batch_size=batch_size)


class BatchNormRecalibration(Callback):
    """Before validation and test: BatchNorm statistics from ``num_batches`` training batches.

    ``transform``: ``train`` (the training augmentation) or ``eval`` (the evaluation resize
    and crop) for those images. ``seed`` picks the images and their augmentations; the same
    batches are used every time, and the training's random generators are left as they were,
    so the weights train exactly as without this callback and a resumed run matches an
    unbroken one.

    The test pass skips the work when the weights it tests already hold statistics
    re-estimated for them (best.ckpt, written right after its validation): it tests them as
    saved, so the test scores are those of the file predict and export read. Networks without
    BatchNorm, or whose BatchNorm layers are all frozen, are left alone. Under DDP every
    process estimates on its share of the images and the statistics are averaged.
    """

    def __init__(self, *, num_batches: int, transform: str, seed: int) -> None:
        if not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(
                "callbacks.bn_recalibration.num_batches must be a positive integer, got "
                f"{num_batches!r} (turn the recalibration off with "
                "`callbacks.bn_recalibration=null`)."
            )
        if transform not in CALIBRATION_TRANSFORMS:
            raise ValueError(
                "callbacks.bn_recalibration.transform must be one of "
                f"{' | '.join(CALIBRATION_TRANSFORMS)}, got {transform!r}."
            )
        self.num_batches = num_batches
        self.transform = transform
        self.seed = seed
        # global step at which the module's statistics were last re-estimated
        self.recalibrated_at: int | None = None
        # whether the checkpoint last loaded holds statistics re-estimated for its weights
        self._loaded_recalibrated = False
        self._said_nothing_to_do = False
        # The DataModule training draws from: a test given loaders instead of a DataModule
        # (a dataset without a test split is evaluated on val) still has it from the fit.
        self._datamodule: Any = None

    @property
    def state_key(self) -> str:
        return "BatchNormRecalibration"

    def state_dict(self) -> dict[str, Any]:
        return {"recalibrated_at": self.recalibrated_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.recalibrated_at = state_dict.get("recalibrated_at")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Set by Lightning's data connector, not declared on the Trainer class.
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            self._datamodule = datamodule

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # A checkpoint written after a validation at step S records S; one written inside an
        # epoch (a preemption) has trained past its last recalibration.
        state = (checkpoint.get("callbacks") or {}).get(self.state_key) or {}
        step = state.get("recalibrated_at")
        self._loaded_recalibrated = step is not None and step == checkpoint.get("global_step")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return  # its scores count for nothing
        self.recalibrate(trainer, pl_module, "val")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is not None:
            current = self._loaded_recalibrated
        else:
            current = self.recalibrated_at is not None and self.recalibrated_at == (
                trainer.global_step
            )
        if current:
            log.info(
                "Testing with the BatchNorm statistics re-estimated for these weights at "
                "step %d, as saved%s.",
                self.recalibrated_at,
                f" in {trainer.ckpt_path}" if trainer.ckpt_path else "",
            )
            return
        self.recalibrate(trainer, pl_module, "test")

    def recalibrate(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Re-estimate the statistics now; logs ``<stage>/bn_recal_batches`` and
        ``<stage>/bn_recal_s`` (the cost)."""
        layers = recalibrated_layers(pl_module)
        if not layers:
            if not self._said_nothing_to_do:
                log.info("BatchNorm recalibration: no trainable BatchNorm layer; nothing to do.")
                self._said_nothing_to_do = True
            return
        datamodule = self._datamodule
        if datamodule is None:
            log.warning(
                "BatchNorm recalibration skipped before %s: no DataModule to draw training "
                "images from; the statistics stay as they are.",
                "validation" if stage == "val" else "the test",
            )
            return
        if not hasattr(datamodule, "calibration_dataset"):
            raise TypeError(
                "callbacks.bn_recalibration needs the run's DataModule to provide "
                "`calibration_dataset(transform)` (mbv3_lightning's ImageFolderDataModule "
                "does); turn it off with `callbacks.bn_recalibration=null`."
            )
        started = time.perf_counter()
        memory_format = getattr(pl_module, "memory_format", torch.contiguous_format)

        def forward(batch: Any) -> None:
            # The device transfer and its hooks (the GPU path's augmentation), as training.
            images, _ = trainer.strategy.batch_to_device(batch)
            pl_module(images.contiguous(memory_format=memory_format))

        with seeded_rng(self.seed), trainer.precision_plugin.forward_context():
            loader = calibration_loader(
                datamodule.calibration_dataset(self.transform),
                batch_size=datamodule.batch_size,
                num_batches=self.num_batches,
                seed=self.seed,
                rank=trainer.global_rank,
                world_size=trainer.world_size,
            )
            count = estimate_statistics(layers, loader, forward)
        if trainer.world_size > 1:
            count = average_over_processes(
                layers, count, lambda t: trainer.strategy.reduce(t, reduce_op="sum")
            )
        seconds = time.perf_counter() - started
        if count == 0:
            log.warning("BatchNorm recalibration skipped: the training split has too few images.")
            return
        self.recalibrated_at = trainer.global_step
        log.info(
            "BatchNorm statistics of %d layers re-estimated over %d training batches (%s "
            "transform) before %s at step %d in %.2f s.",
            len(layers),
            count,
            self.transform,
            "validation" if stage == "val" else "the test",
            trainer.global_step,
            seconds,
        )
        pl_module.log(f"{stage}/bn_recal_batches", float(count), batch_size=1, sync_dist=True)
        pl_module.log(f"{stage}/bn_recal_s", seconds, batch_size=1, sync_dist=True)
