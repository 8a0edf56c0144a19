"""Optuna samplers and pruners from their config nodes, through an allow-list.

``hydra.sweeper.sampler`` and ``hydra.sweeper.pruner`` name a class with ``_target_`` as the
Hydra Optuna sweeper plugin's configs did. Only the classes of ``optuna.samplers`` and
``optuna.pruners`` are built (a trial's job reads the pruner back from its Hydra config, so it
is never an arbitrary import path), with the node's other keys as keyword arguments.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler

_MODULES: dict[str, type] = {"optuna.samplers": BaseSampler, "optuna.pruners": BasePruner}


class BuildError(ValueError):
    """A sampler or pruner node that names no Optuna class, or bad arguments for it."""


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def plain_mapping(node: DictConfig | None) -> dict[str, Any] | None:
    """A config node as plain data, resolved (``None`` for no node)."""
    if node is None:
        return None
    value = OmegaConf.to_container(node, resolve=True)
    if not isinstance(value, dict):
        raise BuildError(f"Expected a mapping, got {node!r}.")
    return {str(k): v for k, v in value.items()}


def target_class(node: Mapping[str, Any], where: str) -> type:
    """The class ``node['_target_']`` names, if it is one of Optuna's samplers or pruners."""
    target = str(node.get("_target_", ""))
    module_name, _, name = target.rpartition(".")
    base = _MODULES.get(module_name)
    cls = getattr(importlib.import_module(module_name), name, None) if base else None
    if base is None or not isinstance(cls, type) or not issubclass(cls, base) or name[:1] == "_":
        allowed = ", ".join(f"{m}.<Name>" for m in _MODULES)
        raise BuildError(f"{where}: '_target_: {target}' is not an Optuna class ({allowed}).")
    return cls


def build(node: Mapping[str, Any] | None, where: str, **extra: Any) -> Any:
    """The sampler or pruner ``node`` describes (``None`` for no node); ``extra`` keyword
    arguments win over the node's (the sweeper passes a trial's seed this way)."""
    node = _plain(node)
    if node is None:
        return None
    cls = target_class(node, where)
    kwargs = {
        key: build(value, f"{where}.{key}")
        if isinstance(value, dict) and "_target_" in value
        else value
        for key, value in node.items()
        if key != "_target_"
    }
    kwargs.update(extra)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise BuildError(f"{where} ({cls.__name__}): {err}") from None


def trial_seed(seed: int | None, number: int) -> int | None:
    """The sampler seed of trial ``number`` in a study seeded with ``seed``.

    One seed per trial rather than per process: an uninterrupted study repeats itself, a
    resumed one does not propose its first trials again, and two processes sharing a study
    never draw the same random trial. (Only for samplers whose seed drives nothing but their
    random draws; see the sweeper.)
    """
    if seed is None:
        return None
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])
