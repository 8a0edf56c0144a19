"""Freezing: ``none``, the whole ``backbone``, or the first N feature blocks.

The car-colour recipe's ``freeze_layers`` trains only the classifier head.

Frozen parameters stop receiving gradients; their BatchNorm layers must also stop updating
running statistics, which :func:`hold_frozen_batchnorm` does after every ``train()`` call.
"""

from __future__ import annotations

from torch import nn

from mbv3_lightning.models.registry import ModelSpec


def feature_blocks(net: nn.Module, spec: ModelSpec) -> list[nn.Module]:
    """The leading feature blocks of ``net`` in forward order, as the registry defines them."""
    if isinstance(spec.blocks, str):
        return list(net.get_submodule(spec.blocks).children())
    return [net.get_submodule(path) for path in spec.blocks]


def _heads(net: nn.Module, spec: ModelSpec) -> list[nn.Module]:
    present = []
    for path in spec.heads:
        try:
            present.append(net.get_submodule(path))
        except AttributeError:  # e.g. InceptionV3 built without its auxiliary classifier
            continue
    return present


def parse_freeze(freeze: str | int | None) -> str | int:
    """``none``/``backbone`` or a number of blocks, from config (Hydra gives ints for digits)."""
    if freeze is None or freeze == "none":
        return "none"
    if freeze == "backbone":
        return "backbone"
    if isinstance(freeze, int) and not isinstance(freeze, bool) and freeze >= 0:
        return freeze
    if isinstance(freeze, str) and freeze.isdigit():
        return int(freeze)
    raise ValueError(
        f"model.freeze must be 'none', 'backbone' or a number of leading feature blocks "
        f">= 0, got {freeze!r}."
    )


def freeze(net: nn.Module, spec: ModelSpec, setting: str | int | None) -> int:
    """Freeze ``net`` in place as ``setting`` says; returns the number of frozen parameters.

    ``backbone`` leaves only the replaced classifier head(s) trainable (the paper's "last layer
    replaced", without fine-tuning); ``N`` freezes the first N of the registry's feature blocks.
    """
    setting = parse_freeze(setting)
    if setting == "none":
        return 0
    if setting == "backbone":
        keep = {id(p) for head in _heads(net, spec) for p in head.parameters()}
        frozen = [p for p in net.parameters() if id(p) not in keep]
    else:
        blocks = feature_blocks(net, spec)
        if setting > len(blocks):
            raise ValueError(
                f"model.freeze={setting} but {spec.name} has only {len(blocks)} feature blocks; "
                f"use 0..{len(blocks)} or model.freeze=backbone."
            )
        frozen = [p for block in blocks[:setting] for p in block.parameters()]
    for parameter in frozen:
        parameter.requires_grad_(False)
    return sum(p.numel() for p in frozen)


def hold_frozen_batchnorm(net: nn.Module) -> None:
    """Put BatchNorm layers whose parameters are all frozen into eval mode.

    A frozen block keeps the running mean/variance it was pretrained with; letting a new
    dataset's batches move them would change a block that is supposed to stay fixed.
    """
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
