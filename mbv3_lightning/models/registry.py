"""Architectures as data: a model name maps to a builder, its input size and its head.

Registering a new architecture is one decorated builder here plus one ``conf/model/<name>.yaml``.
Builders return a network with its original ImageNet head (1000 classes) so parameter counts
and pretrained state dicts line up with the published ones; :func:`create_model` then
swaps the head for the dataset's ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torchvision import models as tvm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the project needs to know about one architecture."""

    name: str
    builder: Callable[..., nn.Module]
    input_size: int
    head: str  # dotted attribute path of the final nn.Linear, e.g. "classifier.3"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, input_size: int, head: str
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder to the registry; duplicate names are a programming error."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"Model '{name}' is registered twice.")
        _REGISTRY[name] = ModelSpec(name=name, builder=builder, input_size=input_size, head=head)
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


def create_model(
    name: str,
    num_classes: int,
    *,
    bn_momentum: float | None = None,
    **arch_kwargs: object,
) -> nn.Module:
    """Build architecture ``name`` with a new ``num_classes`` head.

    ``bn_momentum`` overrides every BatchNorm's momentum (``None`` keeps the architecture's
    own; torchvision's MobileNetV3 uses 0.01, tuned for long ImageNet runs, whose running
    statistics lag far behind the weights in a short from-scratch run).
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}.")
    spec = get_spec(name)
    net = spec.builder(**arch_kwargs)
    replace_head(net, spec.head, num_classes)
    if bn_momentum is not None:
        if not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], got {bn_momentum}.")
        _set_batchnorm_momentum(net, bn_momentum)
    return net


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


@register_model("mobilenet_v3_large", input_size=224, head="classifier.3")
def mobilenet_v3_large(*, width_mult: float = 1.0, dropout: float = 0.2) -> nn.Module:
    return tvm.mobilenet_v3_large(width_mult=width_mult, dropout=dropout)


@register_model("mobilenet_v3_small", input_size=224, head="classifier.3")
def mobilenet_v3_small(*, width_mult: float = 1.0, dropout: float = 0.2) -> nn.Module:
    return tvm.mobilenet_v3_small(width_mult=width_mult, dropout=dropout)
