"""Where the Hydra configs live and the custom interpolations they use."""

from __future__ import annotations

from omegaconf import OmegaConf

from mbv3_lightning.resources import resource_path
from mbv3_lightning.runs.wandb_mode import wandb_offline

CONFIG_NAME = "train"


def config_dir() -> str:
    """Absolute path of ``conf/`` (works from any working directory and from a wheel)."""
    return str(resource_path("conf"))


def register_resolvers() -> None:
    """``${resource:data/fruits360-mini}`` and ``${wandb_offline:}`` for the YAML files."""
    if not OmegaConf.has_resolver("resource"):
        OmegaConf.register_new_resolver("resource", lambda name: str(resource_path(name)))
    if not OmegaConf.has_resolver("wandb_offline"):
        OmegaConf.register_new_resolver("wandb_offline", wandb_offline)
