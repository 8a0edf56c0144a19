"""A checkpoint's hyper-parameters: data, checked before anything is built from them.

Checkpoints carry everything needed to rebuild their network (``net``: the registry builder's
keyword arguments) without the config or the LightningModule, so predict, export and the web
page can rebuild it from here. A checkpoint is a file someone else may have written: its
values are never handed to Hydra's ``instantiate`` (which calls any nested ``_target_``).
:func:`checked_hparams` accepts plain values only, networks are built by the registry's own
builder (:func:`build_net`), and optimiser and schedule nodes must name an allowed class
(:func:`check_factory_node`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from mbv3_lightning.models.registry import build_network, get_spec, list_models
from mbv3_lightning.models.safe_load import UnsafeCheckpointError, load_checkpoint

# The registry builder that `model.net` nodes (and upgraded old checkpoints) call.
NET_TARGET = "mbv3_lightning.models.registry.build_network"
# build_network's own keyword arguments; the rest of a net node goes to the arch's builder.
NET_COMMON_KEYS = ("arch", "pretrained", "weights_path", "bn_momentum")
# The project's own schedule factories (conf/scheduler/); with torch.optim.lr_scheduler's
# classes, the only scheduler targets a checkpoint may name.
PROJECT_SCHEDULERS = (
    "mbv3_lightning.training.optim.cosine_schedule",
    "mbv3_lightning.training.optim.OneCycleSchedule",
)
# Config-node keys a factory node may hold besides the factory's arguments.
FACTORY_NODE_KEYS = ("_target_", "_partial_", "interval")
_SCALARS = (bool, int, float, str, type(None))


def plain_value(value: Any, key: str) -> Any:
    """``value`` if it is plain data (a number, a string, a bool, None or a list of those),
    else an :class:`UnsafeCheckpointError` naming ``key``: a mapping here could be a config
    node whose ``_target_`` something downstream would call."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [plain_value(item, f"{key}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, Mapping) and "_target_" in value:
        found = f"a config node calling `{value['_target_']}`"
    else:
        found = f"a {type(value).__name__}"
    raise UnsafeCheckpointError(
        f"`{key}` holds {found}, where only plain values (numbers, strings, lists) belong"
    )


def network_kwargs(net: Mapping[str, Any], key: str = "net") -> dict[str, Any]:
    """A ``model.net`` node -> :func:`build_network`'s keyword arguments, checked: the target
    is the registry's builder, ``arch`` is registered, every other key is an argument of that
    architecture's builder, and every value is plain."""
    values = dict(net)
    target = values.pop("_target_", NET_TARGET)
    if target != NET_TARGET:
        raise UnsafeCheckpointError(
            f"`{key}._target_` is `{target}`; networks are built by the registry's "
            f"builder `{NET_TARGET}` only (add an architecture with @register_model)"
        )
    arch = values.get("arch")
    if not isinstance(arch, str) or arch not in list_models():
        raise UnsafeCheckpointError(
            f"`{key}.arch` is {arch!r}, not a registered architecture ({', '.join(list_models())})"
        )
    accepted = set(NET_COMMON_KEYS) | set(inspect.signature(get_spec(arch).builder).parameters)
    unknown = sorted(set(values) - accepted)
    if unknown:
        raise UnsafeCheckpointError(
            f"`{key}` has {', '.join(unknown)}, no argument of the {arch} builder "
            f"(it takes: {', '.join(sorted(accepted - {'arch'}))})"
        )
    return {name: plain_value(value, f"{key}.{name}") for name, value in values.items()}


def build_net(net: Mapping[str, Any], num_classes: int) -> torch.nn.Module:
    """The network of a ``model.net`` node for ``num_classes`` classes, built by the registry
    (never by ``instantiate``: the node may come from a checkpoint)."""
    return build_network(num_classes=num_classes, **network_kwargs(net))


def _allowed_target(target: Any, kind: str) -> bool:
    """An optimiser is a ``torch.optim`` Optimizer class; a schedule a
    ``torch.optim.lr_scheduler`` class or one of the project's own (PROJECT_SCHEDULERS).
    Resolved by attribute on those modules only: nothing named in a checkpoint is imported."""
    if not isinstance(target, str):
        return False
    module, base = (
        (torch.optim, torch.optim.Optimizer)
        if kind == "optimizer"
        else (torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler)
    )
    prefix, _, name = target.rpartition(".")
    if kind == "scheduler" and target in PROJECT_SCHEDULERS:
        return True
    found = getattr(module, name, None) if prefix == module.__name__ else None
    return isinstance(found, type) and issubclass(found, base)


def check_factory_node(node: Any, kind: str) -> dict[str, Any] | None:
    """An ``optimizer`` or ``scheduler`` node read from a checkpoint, checked: its target is on
    the allow-list and its arguments are plain values."""
    if node is None:
        return None
    if not isinstance(node, Mapping):
        raise UnsafeCheckpointError(f"`{kind}` is a {type(node).__name__}, not a config node")
    if not _allowed_target(node.get("_target_"), kind):
        allowed = (
            "a torch.optim optimizer class"
            if kind == "optimizer"
            else f"a torch.optim.lr_scheduler class or one of {', '.join(PROJECT_SCHEDULERS)}"
        )
        raise UnsafeCheckpointError(
            f"`{kind}._target_` is {node.get('_target_')!r}; a checkpoint may only name {allowed}"
        )
    special = sorted(k for k in node if k.startswith("_") and k not in FACTORY_NODE_KEYS)
    if special:
        raise UnsafeCheckpointError(f"`{kind}` has {', '.join(special)}; no checkpoint writes it")
    return {name: plain_value(value, f"{kind}.{name}") for name, value in node.items()}


# ImageClassifier's keyword arguments as a checkpoint stores them, beside net/optimizer/scheduler.
_CLASSIFIER_KEYS = (
    "num_classes",
    "class_names",
    "input_size",
    "label_smoothing",
    "freeze",
    "class_weights",
    "channels_last",
    "preprocess",
)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def checked_hparams(hparams: Any, source: str | Path) -> dict[str, Any]:
    """A checkpoint's ``hyper_parameters`` as plain, checked keyword arguments of
    ImageClassifier, or an :class:`UnsafeCheckpointError` naming the file and the key.

    """
    try:
        values = dict(hparams) if isinstance(hparams, Mapping) else {}
        if "net" not in values:
            raise UnsafeCheckpointError(
                "it has no `net`/`num_classes` hyper-parameters; it was not written by "
                "`python -m mbv3_lightning`. Pass a checkpoint from <run dir>/checkpoints/"
            )
        unknown = sorted(str(k) for k in values if k not in ("net", "optimizer", "scheduler"))
        unknown = [k for k in unknown if k not in _CLASSIFIER_KEYS]
        if unknown:
            raise UnsafeCheckpointError(
                f"it holds hyper-parameter(s) {', '.join(unknown)} that this project never writes"
            )
        if not isinstance(values["net"], Mapping):
            raise UnsafeCheckpointError("`net` is not a config node")
        checked = {
            "net": {"_target_": NET_TARGET, **network_kwargs(values["net"])},
            "optimizer": check_factory_node(values.get("optimizer"), "optimizer"),
            "scheduler": check_factory_node(values.get("scheduler"), "scheduler"),
            **{k: plain_value(values[k], k) for k in _CLASSIFIER_KEYS if k in values},
        }
        num_classes = checked.get("num_classes")
        if not _positive_int(num_classes):
            raise UnsafeCheckpointError(f"`num_classes` is {num_classes!r}, not a positive count")
        names = checked.get("class_names")
        if names is not None and (
            len(names) != num_classes or not all(isinstance(n, str) for n in names)
        ):
            raise UnsafeCheckpointError(
                f"`class_names` is not a list of {num_classes} names (one per class)"
            )
        size = checked.get("input_size")
        if size is not None and not _positive_int(size):
            raise UnsafeCheckpointError(f"`input_size` is {size!r}, not a size in pixels")
    except UnsafeCheckpointError as error:
        raise UnsafeCheckpointError(f"Refusing to load '{source}': {error}.") from None
    return checked


def read_checked_hparams(path: str | Path) -> dict[str, Any]:
    """The checked hyper-parameters of the checkpoint at ``path`` (read weights-only)."""
    return checked_hparams(load_checkpoint(path, mmap=True).get("hyper_parameters"), path)
