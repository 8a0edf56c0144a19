"""Architectures as data: a model name maps to a builder, its input size, head and blocks.

Registering a new architecture is one decorated builder here plus one ``conf/model/<name>.yaml``
whose ``net`` node calls :func:`build_network` with the builder's keyword arguments.
Builders return a network with its original ImageNet head (1000 classes) so parameter counts
and pretrained state dicts line up with the published ones; :func:`create_model` then loads
pretrained weights (if asked) and swaps the head(s) for the dataset's ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torchvision import models as tvm

from mbv3_lightning.models.nets.mobilenet_v1 import MobileNetV1
from mbv3_lightning.models.pretrained import (
    download_state_dict,
    imagenet_weights,
    load_backbone,
    read_state_dict,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the project needs to know about one architecture."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    head: str  # dotted attribute path of the final nn.Linear, e.g. "classifier.3"
    # The leading feature blocks `model.freeze=N` counts: a container whose children are the
    # blocks ("features"), or the blocks' own attribute paths in forward order.
    blocks: str | tuple[str, ...] = "features"
    aux_head: str | None = None  # a second classifier trained alongside (InceptionV3)
    # Maps the builder's keyword arguments to the torchvision model whose ImageNet weights fit
    # that variant, or None (e.g. width_mult != 1.0); no function = no torchvision weights.
    weights: Callable[..., str | None] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # The smallest input the network accepts with every feature map at least 1x1; checked at
    # composition time (cli/config_check.py). Assumption for the stride-32 networks: 32 px, one
    # pixel at the last stage; smaller inputs run only thanks to padding and learn nothing.
    min_input_size: int = 32

    @property
    def heads(self) -> tuple[str, ...]:
        """Attribute paths of every classifier head replaced for ``num_classes``."""
        return (self.head, self.aux_head) if self.aux_head else (self.head,)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    input_size: int,
    head: str,
    blocks: str | tuple[str, ...] = "features",
    aux_head: str | None = None,
    weights: Callable[..., str | None] | None = None,
    min_input_size: int = 32,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder to the registry; duplicate names are a programming error."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"Model '{name}' is registered twice.")
        _REGISTRY[name] = ModelSpec(
            name=name,
            builder=builder,
            input_size=input_size,
            head=head,
            blocks=blocks,
            aux_head=aux_head,
            weights=weights,
            min_input_size=min_input_size,
        )
        return builder

    return decorate


def list_models() -> list[str]:
    """Sorted names of every registered architecture."""
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``, or an error that lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown model architecture '{name}'. Available: {', '.join(list_models())}. "
            "Choose one with `model=<name>` (see conf/model/)."
        ) from None


def _set_batchnorm_momentum(net: nn.Module, momentum: float) -> None:
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


def _has_submodule(net: nn.Module, path: str) -> bool:
    try:
        net.get_submodule(path)
    except AttributeError:
        return False
    return True


def replace_head(net: nn.Module, head: str, num_classes: int) -> nn.Linear:
    """Swap the final ``nn.Linear`` at attribute path ``head`` for a new ``num_classes`` one."""
    parent_path, _, attr = head.rpartition(".")
    parent = net.get_submodule(parent_path) if parent_path else net
    old = getattr(parent, attr)  # also works for nn.Sequential indices ("3")
    if not isinstance(old, nn.Linear):
        raise TypeError(
            f"Head '{head}' of {type(net).__name__} is {type(old).__name__}, not Linear."
        )
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    setattr(parent, attr, new)
    return new


def pretrained_state_dict(spec: ModelSpec, **arch_kwargs: object) -> dict:
    """torchvision's ImageNet weights for this variant of ``spec`` (cached or downloaded)."""
    torchvision_name = spec.weights(**arch_kwargs) if spec.weights else None
    if torchvision_name is None:
        variant = ", ".join(f"{k}={v}" for k, v in sorted(arch_kwargs.items()))
        raise ValueError(
            f"torchvision has no ImageNet weights for {spec.name} ({variant or 'defaults'}). "
            "Use model.net.pretrained=false, a variant with weights (width_mult=1.0), or a "
            "local state dict with model.net.weights_path=<file>."
        )
    return download_state_dict(imagenet_weights(torchvision_name))


def create_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    bn_momentum: float | None = None,
    **arch_kwargs: object,
) -> nn.Module:
    """Build architecture ``name``, optionally load weights, and give it ``num_classes`` head(s).

    ``pretrained`` loads torchvision's ImageNet weights, ``weights_path`` a local state dict;
    either way the backbone must match exactly and the head(s) are new. ``bn_momentum``
    overrides every BatchNorm's momentum (``None`` keeps the architecture's own; torchvision's
    MobileNetV3 uses 0.01, tuned for long ImageNet runs, whose running statistics lag far
    behind the weights in a short from-scratch run).
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    if pretrained and weights_path:
        raise ValueError(
            "Set either model.net.pretrained=true (torchvision's ImageNet weights) or "
            "model.net.weights_path=<file> (a local state dict), not both."
        )
    spec = get_spec(name)
    net = spec.builder(**arch_kwargs)
    if pretrained:
        state_dict, source = pretrained_state_dict(spec, **arch_kwargs), "ImageNet"
    elif weights_path:
        state_dict, source = read_state_dict(weights_path), str(weights_path)
    if pretrained or weights_path:
        load_backbone(net, state_dict, heads=spec.heads, source=source)
    for head in spec.heads:
        if _has_submodule(net, head):  # InceptionV3 without aux_logits has no aux head
            replace_head(net, head, num_classes)
    if bn_momentum is not None:
        if not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f"model.net.bn_momentum must be in (0, 1], got {bn_momentum}.")
        _set_batchnorm_momentum(net, bn_momentum)
    return net


def build_network(
    *,
    arch: str,
    num_classes: int,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
    bn_momentum: float | None = 0.1,
    **arch_kwargs: object,
) -> nn.Module:
    """The ``_target_`` of ``model.net``: :func:`create_model` with every argument by name
    (its defaults are ``conf/model_base.yaml``'s).

    The config node holds ``arch`` and the builder's keyword arguments (``width_mult``,
    ``dropout``, ``size``, ...); ``num_classes`` comes from the dataset when it is built.
    """
    return create_model(
        arch,
        num_classes,
        pretrained=pretrained,
        weights_path=weights_path,
        bn_momentum=bn_momentum,
        **arch_kwargs,
    )


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


def _only_width_1(torchvision_name: str) -> Callable[..., str | None]:
    """torchvision publishes ImageNet weights for the MobileNets at width_mult 1.0 only."""

    def weights_for(*, width_mult: float = 1.0, **_: object) -> str | None:
        return torchvision_name if width_mult == 1.0 else None

    return weights_for


@register_model(
    "mobilenet_v3_large",
    input_size=224,
    head="classifier.3",
    weights=_only_width_1("mobilenet_v3_large"),
)
def mobilenet_v3_large(*, width_mult: float = 1.0, dropout: float = 0.2) -> nn.Module:
    return tvm.mobilenet_v3_large(width_mult=width_mult, dropout=dropout)


@register_model(
    "mobilenet_v3_small",
    input_size=224,
    head="classifier.3",
    weights=_only_width_1("mobilenet_v3_small"),
)
def mobilenet_v3_small(*, width_mult: float = 1.0, dropout: float = 0.2) -> nn.Module:
    return tvm.mobilenet_v3_small(width_mult=width_mult, dropout=dropout)


@register_model(
    "mobilenet_v2", input_size=224, head="classifier.1", weights=_only_width_1("mobilenet_v2")
)
def mobilenet_v2(*, width_mult: float = 1.0, dropout: float = 0.2) -> nn.Module:
    return tvm.mobilenet_v2(width_mult=width_mult, dropout=dropout)


@register_model("mobilenet_v1", input_size=224, head="classifier.1")
def mobilenet_v1(
    *, width_mult: float = 1.0, activation: str = "relu6", dropout: float = 0.0
) -> nn.Module:
    return MobileNetV1(width_mult=width_mult, activation=activation, dropout=dropout)


# 63 px: the smallest input whose last max-pool still gets a 3x3 map (measured; below it the
# forward pass fails with a shape error).
@register_model(
    "alexnet",
    input_size=224,
    head="classifier.6",
    weights=lambda **_: "alexnet",
    min_input_size=63,
)
def alexnet(*, dropout: float = 0.5) -> nn.Module:
    return tvm.alexnet(dropout=dropout)


# The Mixed blocks in forward order; AuxLogits branches off after Mixed_6e and is no block.
INCEPTION_BLOCKS = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
)


@register_model(
    "inception_v3",
    input_size=299,
    # torchvision's InceptionV3 documents 75 px as its minimum input (also measured here)
    min_input_size=75,
    head="fc",
    aux_head="AuxLogits.fc",
    blocks=INCEPTION_BLOCKS,
    weights=lambda **_: "inception_v3",
)
def inception_v3(
    *, aux_logits: bool = True, dropout: float = 0.5, transform_input: bool = False
) -> nn.Module:
    # init_weights=True is torchvision's own initialisation (passing it also silences its
    # warning). transform_input re-normalises ImageNet-normalised input to the [-1, 1] range
    # Google's weights were trained with; torchvision turns it on with its weights.
    net = tvm.inception_v3(
        weights=None,
        aux_logits=True,
        init_weights=True,
        dropout=dropout,
        transform_input=transform_input,
    )
    if not aux_logits:  # what torchvision does after loading weights with aux_logits=False
        net.aux_logits = False
        net.AuxLogits = None
    return net


SHUFFLENET_SIZES = ("x0_5", "x1_0", "x1_5", "x2_0")


def _shufflenet_weights(*, size: str = "x1_0", **_: object) -> str:
    return f"shufflenet_v2_{size}"


@register_model(
    "shufflenet_v2",
    input_size=224,
    head="fc",
    blocks=("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"),
    weights=_shufflenet_weights,
)
def shufflenet_v2(*, size: str = "x1_0") -> nn.Module:
    if size not in SHUFFLENET_SIZES:
        raise ValueError(
            f"Unknown ShuffleNetV2 size '{size}'. Available: {', '.join(SHUFFLENET_SIZES)} "
            "(model.net.size)."
        )
    return getattr(tvm, f"shufflenet_v2_{size}")()
