"""YAML is where a default lives: every default of a project constructor that a config node
calls equals the value the composed config gives it, so Python users of the classes and YAML
users of the commands get the same training."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from mbv3_lightning.cli.config import compose_config
from mbv3_lightning.models.registry import get_spec, list_models

OTHER_MODELS = (
    "mobilenet_v3_large",
    "mobilenet_v2",
    "mobilenet_v1",
    "alexnet",
    "inception_v3",
    "shufflenet_v2",
)
# The base choice of every group whose nodes call the project's code (dataset: the generic
# folder, not a named dataset that sets its own values on purpose).
GROUPS = [
    [],
    ["dataset=image_folder", "dataset.root=/data"],
    ["optimizer=sgd"],
    ["scheduler=cosine"],
    ["logger=wandb"],
    *([f"model={name}"] for name in OTHER_MODELS),
]
# Arguments the runner passes from elsewhere (the model's input size and normalisation, the
# dataset's classes): their Python defaults are for calls outside a run.
SUPPLIED = {"input_size", "mean", "std", "split_manifest", "class_names", "class_weights"}


def _project_defaults(target: Any) -> dict[str, Any]:
    function = target.__init__ if inspect.isclass(target) else target
    if not (getattr(function, "__module__", None) or "").startswith("mbv3_lightning"):
        return {}  # a library's own signature (torch, Lightning): the config sets its values
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "_target_" in node:
            yield path, node
        for key, value in node.items():
            yield from _nodes(value, f"{path}.{key}".strip("."))


def _disagreements(overrides: list[str]) -> list[str]:
    config = compose_config("train", overrides, hydra_runtime=True)
    found = []
    for path, node in _nodes(OmegaConf.to_container(config, resolve=True)):
        if path == "dataset" and "dataset=image_folder" not in overrides[:1]:
            continue  # the demo's dataset sets its own size and crop on purpose
        defaults = _project_defaults(get_object(node["_target_"]))
        if path == "model.net":
            defaults |= _project_defaults(get_spec(node["arch"]).builder)
        for key, value in node.items():
            if key.startswith("_") or key not in defaults or key in SUPPLIED:
                continue
            default = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
            if default != value:
                found.append(f"{path}.{key}: Python {defaults[key]!r}, config {value!r}")
    return found


@pytest.mark.parametrize("overrides", GROUPS, ids=lambda o: " ".join(o) or "defaults")
def test_python_defaults_are_the_configs(overrides):
    assert _disagreements(overrides) == []


def test_the_check_finds_a_default_that_differs(monkeypatch):
    """Guards the test itself: a changed YAML value is caught."""
    assert _disagreements(["model.label_smoothing=0.3"]) == [
        "model.label_smoothing: Python 0.1, config 0.3"
    ]


def test_every_registry_architecture_has_a_config_checked_above():
    checked = {"mobilenet_v3_small"} | {
        o[0].split("=")[1] for o in GROUPS if o and "model=" in o[0]
    }
    assert set(list_models()) <= checked
