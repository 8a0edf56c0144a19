"""A checkpoint's hyper-parameters: the network node they hold, and how older ones are read.

Checkpoints carry everything needed to rebuild their network (``net``: the registry builder's
keyword arguments) without the config or the LightningModule, so predict, export and the web
page can rebuild it from here. Checkpoints written before the network became a config node
held its knobs flat next to the classifier's; :func:`upgrade_hparams` reads those too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

# The registry builder that `model.net` nodes (and upgraded old checkpoints) call.
NET_TARGET = "mbv3_lightning.models.registry.build_network"
OPTIMIZER_TARGETS = {
    "sgd": "torch.optim.SGD",
    "adam": "torch.optim.Adam",
    "adamw": "torch.optim.AdamW",
}
COSINE_TARGET = "mbv3_lightning.training.optim.cosine_schedule"
# Hyper-parameters of ImageClassifier itself in checkpoints written before `model.net` existed;
# every other key there was a keyword argument of the architecture's registry builder.
_LEGACY_CLASSIFIER_KEYS = {
    "arch",
    "num_classes",
    "class_names",
    "input_size",
    "bn_momentum",
    "label_smoothing",
    "pretrained",
    "weights_path",
    "freeze",
    "class_weights",
    "channels_last",
    "optimizer",
    "scheduler",
}


def _legacy_optimizer(old: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{name: sgd, lr, momentum, ...}`` -> the ``_partial_`` node conf/optimizer/sgd.yaml is."""
    if old is None or "_target_" in old:
        return None if old is None else dict(old)
    values = dict(old)
    name = values.pop("name", "adamw")
    if name not in OPTIMIZER_TARGETS:
        raise ValueError(f"Unknown optimizer '{name}' in an old checkpoint's hyper-parameters.")
    if name == "sgd":  # the old builder's defaults, which only SGD used
        values = {"momentum": 0.9, "nesterov": False, **values}
    else:
        values.pop("momentum", None)
        values.pop("nesterov", None)
    return {"_target_": OPTIMIZER_TARGETS[name], "_partial_": True, **values}


def _legacy_scheduler(old: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{name: cosine, lrf, warmup_epochs}`` -> the cosine ``_partial_`` node; ``none`` -> None."""
    if old is None or "_target_" in old:
        return None if old is None else dict(old)
    values = dict(old)
    name = values.pop("name", "none")
    if name == "none":
        return None
    if name != "cosine":
        raise ValueError(f"Unknown scheduler '{name}' in an old checkpoint's hyper-parameters.")
    return {"_target_": COSINE_TARGET, "_partial_": True, **values}


def is_legacy_hparams(hparams: Mapping[str, Any]) -> bool:
    """Written before `model.net`: a flat ``arch`` and no ``net`` node."""
    return "arch" in hparams and "net" not in hparams


def upgrade_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Hyper-parameters of a checkpoint from before `model.net` (flat ``arch``, builder kwargs,
    ``optimizer: {name: ...}``) -> today's shape; current ones are returned unchanged (copied).

    Old: ``{arch, num_classes, bn_momentum, pretrained, weights_path, width_mult, dropout, ...,
    optimizer: {name: adamw, lr, weight_decay}, scheduler: {name: cosine, lrf, warmup_epochs}}``.
    New: ``{net: {_target_: build_network, arch, bn_momentum, pretrained, weights_path,
    width_mult, dropout}, num_classes, ..., optimizer: {_target_: torch.optim.AdamW,
    _partial_: true, lr, weight_decay}, scheduler: {_target_: cosine_schedule, ...}}``.
    """
    if not is_legacy_hparams(hparams):
        return dict(hparams)
    old = dict(hparams)
    net = {
        "_target_": NET_TARGET,
        "arch": old["arch"],
        "bn_momentum": old.get("bn_momentum", 0.1),
        "pretrained": old.get("pretrained", False),
        "weights_path": old.get("weights_path"),
        **{k: v for k, v in old.items() if k not in _LEGACY_CLASSIFIER_KEYS},
    }
    new = {k: v for k, v in old.items() if k in _LEGACY_CLASSIFIER_KEYS and k not in net}
    new.pop("bn_momentum", None)
    new["net"] = net
    new["optimizer"] = _legacy_optimizer(old.get("optimizer"))
    new["scheduler"] = _legacy_scheduler(old.get("scheduler"))
    return new


def build_net(net: Mapping[str, Any], num_classes: int) -> torch.nn.Module:
    """Instantiate a ``model.net`` node for ``num_classes`` classes."""
    from hydra.utils import instantiate

    return instantiate({"_target_": NET_TARGET, **net}, num_classes=num_classes, _convert_="all")
