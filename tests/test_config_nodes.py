"""Config as the interface: `_target_` optimiser, schedule and network nodes, the upgrade of
checkpoints written before them, and the compose-time check of choice-valued keys."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from mbv3_lightning.cli.config_check import ConfigError, check_config
from mbv3_lightning.deploy.predictor import load_checkpoint_network
from mbv3_lightning.models.hparams import build_net
from mbv3_lightning.training.module import ImageClassifier
from mbv3_lightning.training.optim import OneCycleSchedule, cosine_factor
from mbv3_lightning.training.run import build_components
from tests.conftest import FAST_OVERRIDES, run_module


class _LearningRates(L.Callback):
    """The learning rate each training step ran with."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.append(trainer.optimizers[0].param_groups[0]["lr"])


def _fit(cfg, *callbacks: L.Callback, **trainer_kwargs) -> tuple[L.Trainer, ImageClassifier]:
    """Build everything from ``cfg`` as the app does and fit a real Trainer on it."""
    datamodule, model, _, _ = build_components(cfg)
    trainer = L.Trainer(
        callbacks=list(callbacks),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_kwargs,
    )
    trainer.fit(model, datamodule=datamodule)
    return trainer, model


def _tiny(tiny_dataset: Path, *extra: str) -> list[str]:
    return [
        "dataset=image_folder",
        f"dataset.root={tiny_dataset}",
        *FAST_OVERRIDES,
        "model.input_size=32",
        *extra,
    ]


def test_any_torch_optimizer_trains_from_the_command_line(compose_cfg, tiny_dataset):
    """`optimizer._target_=torch.optim.RMSprop +optimizer.alpha=0.9`: a real RMSprop trains."""
    cfg = compose_cfg(
        _tiny(tiny_dataset, "optimizer._target_=torch.optim.RMSprop", "+optimizer.alpha=0.9")
    )
    check_config(cfg)
    trainer, model = _fit(cfg, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    optimizer = trainer.optimizers[0]
    assert type(optimizer) is torch.optim.RMSprop
    assert optimizer.defaults["alpha"] == 0.9
    # the node's other values reach the class the command line named
    assert optimizer.defaults["lr"] == cfg.optimizer.lr
    assert optimizer.defaults["weight_decay"] == cfg.optimizer.weight_decay
    assert trainer.global_step == 2
    # and the checkpoint's hyper-parameters keep the node as plain data
    assert model.hparams.optimizer["_target_"] == "torch.optim.RMSprop"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)],
)
def test_bundled_optimizers_are_fused_and_follow_the_cosine_schedule(
    choice, expected, compose_cfg, tiny_dataset
):
    overrides = [f"optimizer={choice}", "scheduler=cosine", "scheduler.warmup_epochs=1"]
    cfg = compose_cfg(_tiny(tiny_dataset, *overrides))
    rates = _LearningRates()
    trainer, _ = _fit(cfg, rates, max_epochs=2, limit_train_batches=2, limit_val_batches=1)
    optimizer = trainer.optimizers[0]
    assert type(optimizer) is expected and optimizer.defaults["fused"] is True
    if choice == "sgd":
        assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["nesterov"] is False
    scheduler = trainer.lr_scheduler_configs[0]
    assert scheduler.interval == "step"
    # 4 steps in all, 2 per epoch, 1 warm-up epoch: exactly the old schedule's factors
    lr = cfg.optimizer.lr
    assert rates.seen == [lr * cosine_factor(step, 4, 2, 0.01) for step in range(4)]


def test_the_default_schedule_is_one_cycle_over_the_whole_run(compose_cfg, tiny_dataset):
    """torch's OneCycleLR over every step of the run, peaking at optimizer.lr, with AdamW's
    beta1 cycled against it."""
    cfg = compose_cfg(_tiny(tiny_dataset))
    assert cfg.scheduler._target_ == "mbv3_lightning.training.optim.OneCycleSchedule"
    rates = _LearningRates()
    trainer, _ = _fit(cfg, rates, max_epochs=3, limit_train_batches=2, limit_val_batches=1)
    assert trainer.lr_scheduler_configs[0].interval == "step"
    reference = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=cfg.optimizer.lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        reference, max_lr=cfg.optimizer.lr, total_steps=6, pct_start=0.3
    )
    expected = []
    for _ in range(6):
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        schedule.step()
    assert rates.seen == pytest.approx(expected, rel=1e-12)
    assert rates.seen[0] == pytest.approx(cfg.optimizer.lr / 25)  # the climb starts low
    assert max(rates.seen) == pytest.approx(cfg.optimizer.lr, rel=0.05)


def test_one_cycle_holds_its_last_rate_past_its_end(caplog):
    """A resume with more epochs restores the schedule planned for the first length: torch's
    OneCycleLR raised at the first extra step and stopped the run."""
    rates = []
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=0.01)
    schedule = OneCycleSchedule(optimizer, max_lr=0.01, total_steps=5)
    for _ in range(8):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    plain = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=0.01)
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(plain, max_lr=0.01, total_steps=5)
    expected = []
    for _ in range(5):
        expected.append(plain.param_groups[0]["lr"])
        plain.step()
        torch_schedule.step()
    assert rates[:5] == expected  # the same cycle
    assert rates[5:] == [expected[-1]] * 3  # then its final rate, held
    assert caplog.text.count("one-cycle schedule was planned for 5 steps") == 1
    with pytest.raises(ValueError, match="Tried to step"):
        torch_schedule.step()  # what torch's class does one step later


def test_scheduler_none_keeps_the_learning_rate(compose_cfg, tiny_dataset):
    cfg = compose_cfg(_tiny(tiny_dataset, "scheduler=none"))
    assert cfg.scheduler is None
    trainer, _ = _fit(cfg, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    assert trainer.lr_scheduler_configs == []
    assert trainer.optimizers[0].param_groups[0]["lr"] == cfg.optimizer.lr


def test_a_torch_scheduler_class_gets_only_what_it_takes(compose_cfg, tiny_dataset):
    cfg = compose_cfg(
        _tiny(
            tiny_dataset,
            "scheduler._target_=torch.optim.lr_scheduler.StepLR",
            "~scheduler.max_lr",
            "~scheduler.pct_start",
            "+scheduler.step_size=1",
            "+scheduler.gamma=0.5",
        )
    )
    check_config(cfg)
    trainer, _ = _fit(cfg, max_epochs=1, limit_train_batches=2, limit_val_batches=1)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr / 4)


def test_learning_rate_must_be_positive(compose_cfg, tiny_dataset):
    cfg = compose_cfg(_tiny(tiny_dataset, "optimizer.lr=0"))
    with pytest.raises(ValueError, match=r"optimizer\.lr must be > 0, got 0"):
        _fit(cfg, max_epochs=1, limit_train_batches=1, limit_val_batches=0)


def test_network_knobs_live_under_model_net_and_are_saved(compose_cfg, tiny_dataset, tmp_path):
    cfg = compose_cfg(_tiny(tiny_dataset, "model=mobilenet_v1", "model.net.width_mult=0.25"))
    _, model, _, _ = build_components(cfg)
    assert model.hparams.net == {
        "_target_": "mbv3_lightning.models.registry.build_network",
        "arch": "mobilenet_v1",
        "bn_momentum": 0.1,
        "pretrained": False,
        "weights_path": None,
        "width_mult": 0.25,
        "activation": "relu6",
        "dropout": 0.0,
    }
    assert model.net.features[0][0].out_channels == 8  # 32 x 0.25
    trainer = L.Trainer(accelerator="cpu", logger=False, max_epochs=0)
    trainer.strategy.connect(model)
    ckpt = tmp_path / "new.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = ImageClassifier.load_from_checkpoint(ckpt, map_location="cpu")
    assert loaded.hparams.net == model.hparams.net
    net, info = load_checkpoint_network(ckpt)
    assert info.arch == "mobilenet_v1" and net.features[0][0].out_channels == 8


def test_inception_normalises_its_input_as_its_imagenet_weights_expect(compose_cfg):
    """transform_input follows pretrained: the ImageNet weights were trained on inputs
    normalised another way, a network from scratch is not."""
    for pretrained in (True, False):
        cfg = compose_cfg(["model=inception_v3", f"model.net.pretrained={pretrained}"])
        node = {**OmegaConf.to_container(cfg.model.net, resolve=True), "pretrained": False}
        assert build_net(node, 3).transform_input is pretrained


@pytest.mark.parametrize(
    ("override", "listed"),
    [
        ("model.freeze=bakbone", "none | classifier (train every Linear layer of the head)"),
        ("model.net.arch=resnet9000", "alexnet | inception_v3 | mobilenet_v1"),
        ("dataset.bad_images=ignore", "skip | error"),
        ("dataset.balance=weigths", "none | weights | sampler"),
        ("dataset.cache=maybe", "auto | true | false"),
        ("+optimizer.alpah=0.9", "optimizer.alpah: not an argument of AdamW; it takes: lr"),
        ("optimizer._target_=torch.optim.RMSPROP", "cannot be imported"),
    ],
)
def test_a_typo_in_a_choice_fails_at_compose_time(override, listed, compose_cfg):
    check_config(compose_cfg([]))  # the defaults are valid
    cfg = compose_cfg([override])
    with pytest.raises(ConfigError, match="Invalid configuration") as error:
        check_config(cfg)
    assert listed in str(error.value)


def test_architecture_knobs_are_checked_per_architecture(compose_cfg):
    with pytest.raises(ConfigError, match=r"model\.net\.size='x0_7'.*x0_5 \| x1_0 \| x1_5 \| x2_0"):
        check_config(compose_cfg(["model=shufflenet_v2", "model.net.size=x0_7"]))
    with pytest.raises(ConfigError, match=r"model\.net\.activation='gelu'.*relu6 \| relu"):
        check_config(compose_cfg(["model=mobilenet_v1", "model.net.activation=gelu"]))
    with pytest.raises(ConfigError, match=r"model\.net\.widht_mult: not an argument"):
        check_config(compose_cfg(["+model.net.widht_mult=0.5"]))
    for ok in (["model.freeze=3"], ["model.freeze=last_layer"], ["dataset.cache=false"]):
        check_config(compose_cfg(ok))


def test_the_cli_stops_on_a_typo_before_anything_runs(tmp_path):
    result = run_module(
        "mbv3_lightning",
        "dataset.balance=weigths",
        "model=shufflenet_v2",
        "model.net.size=x3",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 1
    assert "dataset.balance='weigths' is not a valid choice" in result.stderr
    assert "none | weights | sampler" in result.stderr
    assert "x0_5 | x1_0 | x1_5 | x2_0" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing ran, nothing was written
    sweep = run_module(
        "mbv3_lightning",
        "-m",
        "model=shufflenet_v2",
        "model.net.size=x0_5,x9",
        "sweep.dry_run=true",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        timeout=120,
    )
    assert sweep.returncode == 1
    assert "(cell 1: model=shufflenet_v2 model.net.size=x9)" in sweep.stderr
    assert not (tmp_path / "sweep").exists()


def test_base_configs_are_no_group_choices(tmp_path):
    result = run_module("mbv3_lightning", "--help", cwd=tmp_path, timeout=120)
    assert result.returncode == 0
    groups = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    assert "base" not in groups
    assert "model: alexnet, inception_v3, inception_v3_noaux, mobilenet_v1" in groups
