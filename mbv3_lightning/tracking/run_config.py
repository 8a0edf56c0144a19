"""The W&B run config: the resolved Hydra config with every path absolute, and beside it a
``data`` section saying what the run trained on (the dataset's name, classes and images per
split), so a run in the dashboard tells where its data and files were and how much data it saw."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from mbv3_lightning.data.image_folder import ImageFolderDataModule

# Config keys whose values are paths: dataset.root, paths.data_dir, ckpt_path,
# model.net.weights_path, the callbacks' dirpath, the loggers' save_dir, default_root_dir.
_PATH_KEY = re.compile(r"(?:^|_)(?:root|dir|dirpath|path)$")


def absolute_paths(config: Any, key: str = "") -> Any:
    """``config`` with every relative path made absolute against the working directory, where
    the run resolved it (``paths.data_dir: data`` -> ``/home/me/mbv3-lightning/data``). A path
    is a non-empty string under a key that names one (``root``, ``*_dir``, ``dirpath``,
    ``*_path``); other strings (``monitor: val/acc``) are left as they are."""
    if isinstance(config, Mapping):
        return {k: absolute_paths(v, str(k)) for k, v in config.items()}
    if isinstance(config, list):
        return [absolute_paths(v, key) for v in config]
    if isinstance(config, str) and config and _PATH_KEY.search(key):
        return os.path.abspath(config)
    return config


def dataset_facts(datamodule: ImageFolderDataModule) -> dict[str, Any]:
    """The dataset as the run saw it after its split: name, number of classes and images per
    split (0 for a split it lacks); the ``data`` section of the W&B config."""
    counts = datamodule.image_counts()
    return {
        "name": datamodule.name,
        "num_classes": datamodule.num_classes,
        **{f"{split}_images": count for split, count in counts.items()},
    }


def run_config(config: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """What the W&B run's config holds: ``config`` (the resolved Hydra config) with absolute
    paths, and ``data`` (:func:`dataset_facts`) beside it."""
    return {**absolute_paths(config), "data": dict(data)}
