"""Freezing: frozen blocks keep their weights and BatchNorm statistics through real training."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from mbv3_lightning.data.image_folder import ImageFolderDataModule
from mbv3_lightning.models.freeze import feature_blocks, freeze, parse_freeze
from mbv3_lightning.models.registry import get_spec, list_models
from mbv3_lightning.training.module import ImageClassifier

# A classifier that is only inspected, never trained: no optimiser, no schedule.
UNTRAINED = {"optimizer": None, "scheduler": None}


def _train_one_step(model: ImageClassifier, root) -> None:
    datamodule = ImageFolderDataModule(
        root=str(root), name="tiny", input_size=32, batch_size=8, num_workers=0
    )
    trainer = L.Trainer(
        fast_dev_run=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_frozen_blocks_stay_unchanged_and_the_rest_trains(tiny_dataset):
    torch.manual_seed(0)
    model = ImageClassifier(
        {"arch": "mobilenet_v3_small", "bn_momentum": 0.1},
        3,
        input_size=32,
        freeze=4,
        optimizer={"_target_": "torch.optim.SGD", "lr": 0.1},
        scheduler=None,
    )
    blocks = feature_blocks(model.net, get_spec("mobilenet_v3_small"))
    frozen_before = [_snapshot(b) for b in blocks[:4]]
    trained_before = [_snapshot(b) for b in blocks[4:]]
    head_before = model.net.classifier[3].weight.detach().clone()

    _train_one_step(model, tiny_dataset)

    for block, before in zip(blocks[:4], frozen_before, strict=True):
        after = block.state_dict()  # weights AND BatchNorm running statistics
        assert all(torch.equal(after[k], before[k]) for k in before)
    changed = [
        k
        for block, before in zip(blocks[4:], trained_before, strict=True)
        for k, v in block.state_dict().items()
        if k.endswith(("weight", "running_mean")) and not torch.equal(v, before[k])
    ]
    assert len(changed) > 50  # every later block learned and updated its BN statistics
    assert not torch.equal(model.net.classifier[3].weight, head_before)

    counts = model.parameter_counts()
    frozen = sum(p.numel() for b in blocks[:4] for p in b.parameters())
    assert counts["params_trainable"] == counts["params_total"] - frozen


def test_freeze_last_layer_trains_only_the_new_head():
    model = ImageClassifier({"arch": "mobilenet_v3_small"}, 5, **UNTRAINED, freeze="last_layer")
    assert model.parameter_counts()["params_trainable"] == 1024 * 5 + 5
    model.train()
    assert all(not m.training for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.net.classifier[3].training


@pytest.mark.parametrize("name", list_models())
def test_freezing_every_feature_block_leaves_only_the_head_part_trainable(name):
    model = ImageClassifier({"arch": name}, 3, **UNTRAINED)
    blocks = feature_blocks(model.net, get_spec(name))
    in_blocks = sum(p.numel() for b in blocks for p in b.parameters())
    assert freeze(model.net, get_spec(name), len(blocks)) == in_blocks
    counts = model.parameter_counts()
    assert counts["params_trainable"] == counts["params_total"] - in_blocks
    head = model.net.get_submodule(get_spec(name).head)
    assert all(p.requires_grad for p in head.parameters())


def test_bad_freeze_settings_say_what_is_allowed():
    assert parse_freeze("3") == 3 and parse_freeze(None) == "none"
    with pytest.raises(ValueError, match=r"none \| classifier .* last_layer .* a number"):
        parse_freeze("half")
    with pytest.raises(ValueError, match=r"only 13 feature blocks; use 0..13"):
        ImageClassifier({"arch": "mobilenet_v3_small"}, 3, **UNTRAINED, freeze=20)


@pytest.mark.parametrize(
    ("name", "trainable"),
    [
        # the car-colour MobileNetV3 recipe's count: both Linear layers of Small's classifier
        ("mobilenet_v3_small", 576 * 1024 + 1024 + 1024 * 10 + 10),
        ("mobilenet_v3_large", 960 * 1280 + 1280 + 1280 * 10 + 10),
        ("alexnet", 9216 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10),
        ("mobilenet_v2", 1280 * 10 + 10),  # a one-Linear head: same as last_layer
        ("inception_v3", 2048 * 10 + 10 + 768 * 10 + 10),  # fc + the auxiliary head's fc
    ],
)
def test_freeze_classifier_trains_every_linear_layer_of_the_head(name, trainable):
    model = ImageClassifier(
        {"arch": name, "aux_logits": True} if name == "inception_v3" else {"arch": name},
        10,
        **UNTRAINED,
        freeze="classifier",
    )
    assert model.parameter_counts()["params_trainable"] == trainable
    if name == "mobilenet_v3_small":
        assert model.parameter_counts()["params_total"] == 1_528_106
