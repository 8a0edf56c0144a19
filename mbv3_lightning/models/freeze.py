"""Freezing: ``none``, everything but the ``classifier``, everything but its ``last_layer``, or
N leading feature blocks.

``classifier`` is the car-colour MobileNetV3 recipe's ``freeze_layers``: every Linear layer of
the head trains (MobileNetV3-Small: both, 601,098 of 1,528,106 parameters at 10 classes);
``last_layer`` trains only the final, replaced Linear.

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


FREEZE_WORDS = ("none", "classifier", "last_layer")
FREEZE_CHOICES = (
    "none | classifier (train every Linear layer of the head) | last_layer (train only the "
    "final Linear) | a number of leading feature blocks (0, 1, 2, ...)"
)


def parse_freeze(freeze: str | int | None) -> str | int:
    """A freeze word or a number of blocks, from config (Hydra gives ints for digits)."""
    if freeze is None:
        return "none"
    if isinstance(freeze, str) and freeze in FREEZE_WORDS:
        return freeze
    if isinstance(freeze, int) and not isinstance(freeze, bool) and freeze >= 0:
        return freeze
    if isinstance(freeze, str) and freeze.isdigit():
        return int(freeze)
    raise ValueError(
        f"model.freeze={freeze!r} is not a valid choice; choose one of: {FREEZE_CHOICES}"
    )


def classifier_layers(net: nn.Module, spec: ModelSpec) -> list[nn.Module]:
    """Every Linear layer of the classifier head(s): the container holding each replaced head
    (``classifier`` of ``classifier.3``), or the head itself when it sits on the network
    (InceptionV3's ``fc``). Convolutions of an auxiliary head stay frozen: they are features."""
    layers: list[nn.Module] = []
    for path in spec.heads:
        parent_path, _, _ = path.rpartition(".")
        try:
            head = net.get_submodule(path)
        except AttributeError:  # e.g. InceptionV3 built without its auxiliary classifier
            continue
        container = net.get_submodule(parent_path) if parent_path else head
        found = [m for m in container.modules() if isinstance(m, nn.Linear)]
        layers.extend(found or [head])
    return layers


def freeze(net: nn.Module, spec: ModelSpec, setting: str | int | None) -> int:
    """Freeze ``net`` in place as ``setting`` says; returns the number of frozen parameters.

    ``classifier`` leaves every Linear layer of the head(s) trainable; ``last_layer`` only the
    replaced final Linear(s) (the paper's "last layer replaced", without fine-tuning); ``N``
    freezes the first N of the registry's feature blocks.
    """
    parsed = parse_freeze(setting)
    if parsed == "none":
        return 0
    if parsed in ("classifier", "last_layer"):
        trained = classifier_layers(net, spec) if parsed == "classifier" else _heads(net, spec)
        keep = {id(p) for layer in trained for p in layer.parameters()}
        frozen = [p for p in net.parameters() if id(p) not in keep]
    else:
        assert isinstance(parsed, int)  # parse_freeze gives a word or a count
        blocks = feature_blocks(net, spec)
        if parsed > len(blocks):
            raise ValueError(
                f"model.freeze={parsed} but {spec.name} has only {len(blocks)} feature blocks; "
                f"use 0..{len(blocks)} or model.freeze=classifier."
            )
        frozen = [p for block in blocks[:parsed] for p in block.parameters()]
    for parameter in frozen:
        parameter.requires_grad_(False)
    return sum(p.numel() for p in frozen)


def is_frozen_batchnorm(module: nn.Module) -> bool:
    """A BatchNorm layer whose parameters are all frozen: its statistics stay as they are."""
    if not isinstance(module, nn.modules.batchnorm._BatchNorm):
        return False
    params = list(module.parameters(recurse=False))
    return bool(params) and not any(p.requires_grad for p in params)


def hold_frozen_batchnorm(net: nn.Module) -> None:
    """Put BatchNorm layers whose parameters are all frozen into eval mode.

    A frozen block keeps the running mean/variance it was pretrained with; letting a new
    dataset's batches move them would change a block that is supposed to stay fixed.
    """
    for module in net.modules():
        if is_frozen_batchnorm(module):
            module.eval()
