"""callbacks.bn_recalibration: BatchNorm statistics re-estimated before every evaluation."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mbv3_lightning.cli.config_check import config_errors
from mbv3_lightning.data.images import ImageListDataset
from mbv3_lightning.data.random_state import seeded_rng
from mbv3_lightning.data.transforms import eval_transform
from mbv3_lightning.models.batchnorm import (
    average_over_processes,
    estimate_statistics,
    recalibrated_layers,
)
from mbv3_lightning.models.safe_load import load_checkpoint
from mbv3_lightning.training.bn_recalibration import BatchNormRecalibration, calibration_loader
from mbv3_lightning.training.module import ImageClassifier
from mbv3_lightning.training.run import build_components

from .conftest import FAST_OVERRIDES, make_image_folder, run_module

# 3 classes x 3 training images: one batch of all of them re-estimates the statistics, so the
# expected values are the batch statistics of the whole training split, whatever its order.
TRAIN_PER_CLASS = 3
TRAIN_IMAGES = 3 * TRAIN_PER_CLASS
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _overrides(
    root: Path,
    *extra: str,
    epochs: int = 1,
    batch_size: int = TRAIN_IMAGES,
    transform: str = "eval",
) -> list[str]:
    """A tiny run of the real config; by default one recalibration batch of every training
    image with the evaluation transform (no augmentation: the expected values are exact)."""
    fast = [o for o in FAST_OVERRIDES if not o.startswith("dataset.batch_size=")]
    return [
        "dataset=image_folder",
        f"dataset.root={root}",
        "model.input_size=32",
        *fast,
        f"dataset.batch_size={batch_size}",
        f"trainer.max_epochs={epochs}",
        f"callbacks.bn_recalibration.transform={transform}",
        "callbacks.bn_recalibration.num_batches=1",
        "callbacks.lr_monitor=null",  # these Trainers have no logger for it
        *extra,
    ]


class StatisticsBeforeValidation(Callback):
    """The running statistics as training left them, just before each validation."""

    def __init__(self) -> None:
        self.seen: list[dict[str, torch.Tensor]] = []

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.seen.append({k: v.clone() for k, v in _running(pl_module).items()})


def _running(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if "running_" in k}


def _fit(compose_cfg: Any, overrides: list[str], out: Path, *first: Callback) -> tuple[Any, ...]:
    """A real fit of the composed config: its DataModule, module, callbacks and Trainer."""
    cfg = compose_cfg(overrides, out)
    L.seed_everything(cfg.seed, workers=True)  # as training.run does
    datamodule, model, callbacks, _ = build_components(cfg)
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=[*first, *callbacks], logger=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=datamodule)
    return datamodule, model, trainer


def _batch_statistics(
    checkpoint: Path, images: torch.Tensor, device: str
) -> dict[str, torch.Tensor]:
    """Each trainable BatchNorm layer's input mean and (unbiased) variance over ``images``,
    forwarded in training mode (as training normalises) with the checkpoint's weights."""
    model = ImageClassifier.load_from_checkpoint(checkpoint, map_location=device)
    model.train()  # BatchNorm layers of frozen blocks stay in eval mode
    stats: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].double()
            stats[f"{name}.running_mean"] = x.mean(dim=(0, 2, 3)).cpu()
            stats[f"{name}.running_var"] = x.var(dim=(0, 2, 3), unbiased=True).cpu()

        return hook

    for name, module in model.named_modules():
        if module in recalibrated_layers(model):
            module.register_forward_pre_hook(keep(name))
    with torch.no_grad():
        model(images.to(device, memory_format=model.memory_format))
    return stats


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_one_epoch_ends_with_the_training_images_batch_statistics_in_both_checkpoints(
    compose_cfg: Any, tmp_path: Path, device: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_image_folder(
        tmp_path / "data", splits={"train": TRAIN_PER_CLASS, "val": 1, "test": 1}
    )
    out = tmp_path / "run"
    stale = StatisticsBeforeValidation()
    overrides = _overrides(root, "model.freeze=1", f"trainer.accelerator={device}")
    datamodule, model, trainer = _fit(compose_cfg, overrides, out, stale)

    checkpoints = [out / "checkpoints" / "last.ckpt", out / "checkpoints" / "best.ckpt"]
    eval_tf = datamodule.datasets["val"].transform
    images = torch.stack([img for img, _ in ImageListDataset(datamodule.samples("train"), eval_tf)])
    expected = _batch_statistics(checkpoints[0], images, device)
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert len(expected) == 2 * (len(layers) - 1)  # all but the frozen stem's layer
    frozen = "net.features.0.1"  # model.freeze=1: the stem's convolution and BatchNorm
    assert f"{frozen}.running_mean" not in expected
    for path in checkpoints:
        saved = load_checkpoint(path)["state_dict"]
        for key, value in expected.items():
            torch.testing.assert_close(saved[key].double(), value, rtol=1e-5, atol=1e-5)
        # untouched: a BatchNorm built from scratch and then frozen keeps mean 0, variance 1
        assert torch.equal(saved[f"{frozen}.running_mean"], torch.zeros(16))
        assert torch.equal(saved[f"{frozen}.running_var"], torch.ones(16))
        # the training step's counter, as training left it
        assert int(saved["net.features.1.block.0.1.num_batches_tracked"]) == 1
    # what training alone had left differed: the re-estimate changed the statistics
    before = stale.seen[0]
    assert max((before[k].double() - v).abs().max().item() for k, v in expected.items()) > 1e-3
    assert trainer.callback_metrics["val/bn_recal_batches"] == 1
    assert trainer.callback_metrics["val/bn_recal_s"] > 0

    # The test of best.ckpt uses its saved statistics, estimated for its weights ...
    with caplog.at_level(logging.INFO, logger="mbv3_lightning.training.bn_recalibration"):
        trainer.test(model, datamodule=datamodule, ckpt_path=str(checkpoints[1]))
    assert "re-estimated for these weights at step 1, as saved in" in caplog.text
    assert "test/bn_recal_batches" not in trainer.callback_metrics
    # ... and weights no estimate is known for (a new Trainer, as with train=false) get one.
    cfg = compose_cfg(overrides, tmp_path / "test_only")
    _, _, callbacks, _ = build_components(cfg)
    tester: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    tester.test(model, datamodule=datamodule)
    assert tester.callback_metrics["test/bn_recal_batches"] == 1


def test_training_trains_the_same_weights_with_and_without_it(
    compose_cfg: Any, tmp_path: Path
) -> None:
    """Its batches are drawn with the training's random generators saved and restored, so the
    weights (and a resumed run's batches) do not depend on it."""
    root = make_image_folder(tmp_path / "data", splits={"train": TRAIN_PER_CLASS, "val": 1})
    # augmented calibration images: it draws random numbers
    overrides = _overrides(root, epochs=2, batch_size=4, transform="train")
    _, with_it, _ = _fit(compose_cfg, overrides, tmp_path / "on")
    off = [*overrides, "callbacks.bn_recalibration=null"]
    _, without, _ = _fit(compose_cfg, off, tmp_path / "off")
    weights = {k: v for k, v in with_it.state_dict().items() if "running_" not in k}
    other = without.state_dict()
    assert all(torch.equal(v, other[k]) for k, v in weights.items())
    assert not all(torch.equal(v, other[k]) for k, v in _running(with_it).items())


def test_a_network_without_trainable_batchnorm_is_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    callback = BatchNormRecalibration(num_batches=4, transform="train", seed=0)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    no_batchnorm = ImageClassifier({"arch": "alexnet"}, 3, optimizer=None, scheduler=None)
    all_frozen = ImageClassifier(
        {"arch": "mobilenet_v3_small"}, 3, freeze="classifier", optimizer=None, scheduler=None
    )
    for model in (no_batchnorm, all_frozen):
        before = _running(model)
        with caplog.at_level(logging.INFO, logger="mbv3_lightning.training.bn_recalibration"):
            callback.recalibrate(trainer, model, "val")  # no DataModule needed: nothing to do
        assert all(torch.equal(v, before[k]) for k, v in _running(model).items())
    assert recalibrated_layers(no_batchnorm) == recalibrated_layers(all_frozen) == []
    assert "no trainable BatchNorm layer; nothing to do" in caplog.text


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("num_batches=0", "num_batches must be a positive integer, got 0"),
        ("num_batches=-3", "num_batches must be a positive integer, got -3"),
        ("transform=random", "transform must be one of train | eval, got 'random'"),
    ],
)
def test_bad_settings_fail_with_the_key_and_the_fix(
    compose_cfg: Any, tiny_dataset: Path, override: str, message: str
) -> None:
    cfg = compose_cfg(_overrides(tiny_dataset, f"callbacks.bn_recalibration.{override}"))
    with pytest.raises(InstantiationException, match=message):
        build_components(cfg)  # a config composed in code, not checked before


def test_the_command_refuses_bad_settings_before_anything_runs(compose_cfg: Any) -> None:
    bad = ["callbacks.bn_recalibration.num_batches=0", "callbacks.bn_recalibration.transform=x"]
    assert config_errors(compose_cfg(bad)) == [
        "callbacks.bn_recalibration.transform='x' is not a valid choice; choose one of: "
        "train | eval",
        "callbacks.bn_recalibration.num_batches=0 is out of range: it must be >= 1 (to turn "
        "the recalibration off: callbacks.bn_recalibration=null)",
    ]
    assert config_errors(compose_cfg(["callbacks.bn_recalibration=null"])) == []


def test_calibration_batches_are_bounded_full_the_same_each_time_and_split_between_ranks() -> None:
    images = list(range(50))  # any sized dataset: the loader only picks indices

    def batches(**kwargs: Any) -> list[list[int]]:
        return [b.tolist() for b in calibration_loader(images, seed=3, **kwargs)]

    first = batches(batch_size=8, num_batches=4)
    assert [len(b) for b in first] == [8, 8, 8, 8]
    assert batches(batch_size=8, num_batches=4) == first
    # more batches asked than the images make: every full batch, no short last one
    assert len(batches(batch_size=8, num_batches=99)) == 6
    ranks = [
        [
            i
            for batch in batches(batch_size=8, num_batches=99, rank=rank, world_size=2)
            for i in batch
        ]
        for rank in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) == 24 and not set(ranks[0]) & set(ranks[1])
    # fewer images than a batch: one batch of them all
    images = images[:5]
    assert [len(b) for b in batches(batch_size=8, num_batches=2)] == [5]


def test_estimate_restores_each_layers_mode_momentum_and_counter() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.1), nn.ReLU())
    unreached = nn.BatchNorm2d(4)  # e.g. an auxiliary head that only runs in training
    unreached.running_mean.fill_(0.5)
    net.eval()
    net[1].num_batches_tracked.fill_(7)
    torch.manual_seed(0)
    batches = [torch.randn(5, 3, 6, 6) * 3 + 1 for _ in range(3)]
    with seeded_rng(0):
        count = estimate_statistics([net[1], unreached], batches, net)
    assert count == 3
    inputs = [net[0](b).detach() for b in batches]
    mean = torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0)
    var = torch.stack([x.var((0, 2, 3)) for x in inputs]).mean(0)  # precise BN: mean of batches
    torch.testing.assert_close(net[1].running_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(net[1].running_var, var, rtol=1e-5, atol=1e-5)
    assert not net[1].training and net[1].momentum == 0.1 and int(net[1].num_batches_tracked) == 7
    assert torch.equal(unreached.running_mean, torch.full((4,), 0.5))


def test_statistics_are_averaged_over_processes_weighted_by_their_batches() -> None:
    """Two processes' layers, each given what all_reduce(sum) returns: the sum of the tensors
    both processes send, call by call."""
    processes = [nn.BatchNorm1d(3), nn.BatchNorm1d(3)]
    processes[0].running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
    processes[1].running_mean.copy_(torch.tensor([4.0, 5.0, 6.0]))
    processes[1].running_var.fill_(4.0)
    counts = [1, 3]
    flat = [torch.cat([bn.running_mean, bn.running_var]) for bn in processes]
    sums = [torch.tensor([4.0]), flat[0] * 1 + flat[1] * 3]  # the batches, the weighted sums
    for bn, count in zip(processes, counts, strict=True):
        replies = iter(sums)
        assert average_over_processes([bn], count, lambda _sent, r=replies: next(r)) == 4
    for bn in processes:
        torch.testing.assert_close(bn.running_mean, torch.tensor([13.0, 17.0, 21.0]) / 4)
        torch.testing.assert_close(bn.running_var, torch.full((3,), 13.0 / 4))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_saves_the_average_of_both_halves(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "data", splits={"train": 4, "val": 1, "test": 1})
    out = tmp_path / "run"
    half = 3 * 4 // 2
    result = run_module(
        "mbv3_lightning",
        *_overrides(root, "trainer=ddp_cpu", "trainer.devices=2", batch_size=half),
        f"hydra.run.dir={out}",
        "hydra.job_logging.handlers.console.level=INFO",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "re-estimated over 2 training batches" in result.stderr + result.stdout
    last = out / "checkpoints" / "last.ckpt"
    model = ImageClassifier.load_from_checkpoint(last)
    manifest = json.loads((out / "split_manifest.json").read_text())
    assert len(manifest["splits"]["train"]) == 2 * half
    tf = eval_transform("augment", 32, model.mean, model.std)
    train = ImageListDataset([(root / p, label) for p, label in manifest["splits"]["train"]], tf)
    per_rank = []
    for rank in (0, 1):
        (batch,) = calibration_loader(
            train, batch_size=half, num_batches=1, seed=42, rank=rank, world_size=2
        )
        per_rank.append(_batch_statistics(last, batch[0], "cpu"))
    saved = load_checkpoint(last)["state_dict"]
    for key in per_rank[0]:
        expected = (per_rank[0][key] + per_rank[1][key]) / 2
        torch.testing.assert_close(saved[key].double(), expected, rtol=1e-5, atol=1e-5)
