"""mbv3-lightning: fine-tune and compare efficient image classifiers with Lightning + Hydra.

``mbv3_lightning.train(overrides=[...])``, ``.load(ckpt)`` and ``.predict(ckpt, images)``
are the Python API (:mod:`mbv3_lightning.cli.api`); they are imported on first use, so
``import mbv3_lightning`` stays light (no torch, no Lightning).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load", "predict", "train"]

_API = ("train", "load", "predict")


def __getattr__(name: str) -> Any:
    if name in _API:
        from mbv3_lightning.cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'mbv3_lightning' has no attribute '{name}'")
