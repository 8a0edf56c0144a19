"""Where the Hydra configs live, the custom interpolations they use, and the one way code
outside a ``@hydra.main`` entry (tests, benchmarks) composes them."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from mbv3_lightning.resources import resource_path
from mbv3_lightning.runs.run_dir import run_dir_for
from mbv3_lightning.tracking.mode import wandb_offline

CONFIG_NAME = "train"


def config_dir() -> str:
    """Absolute path of ``conf/`` (works from any working directory and from a wheel)."""
    return str(resource_path("conf"))


def register_resolvers() -> None:
    """``${resource:data/fruits360-mini}``, ``${wandb_offline:}``, ``${wandb_online:}`` and
    ``${run_dir:...}`` for the YAML files."""
    if not OmegaConf.has_resolver("resource"):
        OmegaConf.register_new_resolver("resource", lambda name: str(resource_path(name)))
    if not OmegaConf.has_resolver("wandb_offline"):
        OmegaConf.register_new_resolver("wandb_offline", wandb_offline)
    if not OmegaConf.has_resolver("run_dir"):
        OmegaConf.register_new_resolver("run_dir", run_dir_for)
    if not OmegaConf.has_resolver("wandb_online"):
        OmegaConf.register_new_resolver("wandb_online", lambda: not wandb_offline())


def compose_config(
    config_name: str = CONFIG_NAME,
    overrides: Sequence[str] = (),
    *,
    hydra_runtime: bool = False,
    output_dir: str | Path | None = None,
    output_key: str = "paths.output_dir",
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with ``overrides``, as the command line would.

    ``hydra_runtime=True`` also registers Hydra's runtime config, so ``${hydra:...}``
    interpolations resolve as inside a job (the job's config itself never holds ``hydra``).
    ``output_dir`` sets ``output_key`` (the run directory). Hydra's global state is left
    clear, so callers of any scope can compose again.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=hydra_runtime)
        if hydra_runtime:
            HydraConfig.instance().set_config(cfg)
    finally:
        GlobalHydra.instance().clear()
    with open_dict(cfg):
        if hydra_runtime:
            del cfg["hydra"]
        if output_dir is not None:
            OmegaConf.update(cfg, output_key, str(output_dir))
    return cfg


# The line before the folders Hydra lists when a config is missing.
SEARCH_PATH = "\nConfig search path:"


def composition_problem(error: Exception) -> str:
    """What a failed composition tells the user: for an unknown choice of a config group
    (``model=mobilenet_v3_larg``) the nearest choice and the list; for anything else Hydra's
    message without the folders it searched, which say nothing about the mistake."""
    from hydra.errors import MissingConfigException

    text = str(error)
    if not isinstance(error, MissingConfigException) or not error.options:
        return text.split(SEARCH_PATH)[0].strip()
    group, _, value = str(error.missing_cfg_file).rpartition("/")
    close = difflib.get_close_matches(value, list(error.options), n=1, cutoff=0.6)
    did_you_mean = f" Did you mean {close[0]}?" if close else ""
    # named by a config file (experiment/x.yaml), not on the command line
    parent = re.match(r"In '([^']+/[^']+)'", text)
    where = f" (named in {parent.group(1)}.yaml)" if parent else ""
    return (
        f"{group}={value} is not a choice of '{group}'{where}.{did_you_mean} "
        f"Choices: {', '.join(sorted(error.options))}"
    )
