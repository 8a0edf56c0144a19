"""Compose-time checks of choice-valued and numeric config keys, so a typo fails before anything
runs.

OmegaConf's structured configs cannot type these keys without changing their values (an Enum
node turns ``skip`` into ``BadImages.skip``; ``model.freeze`` is a word or an integer and
``dataset.cache`` a word or a bool), so the choices are checked here instead, on the composed
config: by :class:`ConfigCheck`, a Hydra callback in ``conf/hydra/default.yaml`` that runs right
after composition (``python -m mbv3_lightning ...``, every cell of a ``-m`` grid before the first
one starts, and the other entry points), and by :func:`check_config` for composed configs in code.
For one run the callback also checks the files and folders the command reads
(:mod:`mbv3_lightning.cli.path_check`). Either failure exits with status 2 before Hydra makes
the run folder.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mbv3_lightning.cli.exit_status import usage_error
from mbv3_lightning.cli.path_check import path_errors
from mbv3_lightning.data.bad_images import BAD_IMAGE_POLICIES
from mbv3_lightning.data.balance import BALANCE_MODES
from mbv3_lightning.data.device_augment import AUGMENT_ON
from mbv3_lightning.data.image_folder import CALIBRATION_TRANSFORMS
from mbv3_lightning.data.ram_cache import CACHE_CHOICES
from mbv3_lightning.data.splits import PROTOCOLS
from mbv3_lightning.data.transforms import PREPROCESSING
from mbv3_lightning.models.freeze import FREEZE_CHOICES, FREEZE_WORDS
from mbv3_lightning.models.hparams import NET_COMMON_KEYS, NET_TARGET
from mbv3_lightning.models.memory_format import CHANNELS_LAST_CHOICES

_ABSENT = object()
# What the module passes to optimiser / schedule factories itself.
OPTIMIZER_SUPPLIED = ("params", "fused")
SCHEDULER_SUPPLIED = ("optimizer", "total_steps", "steps_per_epoch")


class ConfigError(ValueError):
    """One or more config values are not among their valid choices."""


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    except Exception:  # an interpolation that does not resolve here (e.g. ${hydra:...})
        return _ABSENT


def _show(choices: Sequence[Any]) -> str:
    return " | ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in choices)


def _choice(cfg: DictConfig, key: str, choices: Sequence[Any]) -> str | None:
    value = _select(cfg, key)
    if value is _ABSENT:
        return None
    if any(value == c and type(value) is type(c) for c in choices):
        return None
    return f"{key}={value!r} is not a valid choice; choose one of: {_show(choices)}"


def _freeze(cfg: DictConfig) -> str | None:
    value = _select(cfg, "model.freeze")
    if value is _ABSENT or value is None or value in FREEZE_WORDS:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return None
    if isinstance(value, str) and value.isdigit():
        return None
    return f"model.freeze={value!r} is not a valid choice; choose one of: {FREEZE_CHOICES}"


def _parameters(target: Callable[..., Any]) -> dict[str, inspect.Parameter] | None:
    """``target``'s parameters, or None where anything goes (``**kwargs``, no signature)."""
    try:
        parameters = dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return parameters


def _unknown_arguments(
    key: str, node: dict[str, Any], target: Callable[..., Any], supplied: Sequence[str]
) -> str | None:
    parameters = _parameters(target)
    if parameters is None:
        return None
    given = [k for k in node if not k.startswith("_") and k != "interval"]
    unknown = [k for k in given if k not in parameters]
    if not unknown:
        return None
    accepted = [k for k in parameters if k not in supplied and k not in ("self", "args")]
    name = getattr(target, "__qualname__", str(target))
    return (
        f"{', '.join(f'{key}.{k}' for k in unknown)}: not an argument of {name}; "
        f"it takes: {', '.join(accepted)}"
    )


def _net(cfg: DictConfig) -> list[str]:
    from mbv3_lightning.models.nets.mobilenet_v1 import ACTIVATIONS
    from mbv3_lightning.models.registry import SHUFFLENET_SIZES, get_spec, list_models

    errors: list[str] = []
    arch = _select(cfg, "model.net.arch")
    if arch is _ABSENT:
        return errors
    if arch not in list_models():
        return [
            f"model.net.arch={arch!r} is not a registered architecture; choose one of: "
            f"{_show(list_models())} (or `model=<name>`)"
        ]
    errors += filter(None, [_choice(cfg, "model.net.size", SHUFFLENET_SIZES)])
    errors += filter(None, [_choice(cfg, "model.net.activation", tuple(ACTIVATIONS))])
    net = _select(cfg, "model.net")
    target = str(net.get("_target_", NET_TARGET))
    if target != NET_TARGET:
        return [
            f"model.net._target_={target!r}: networks are built by {NET_TARGET} only; "
            "add an architecture to the registry (@register_model) and name it in model.net.arch"
        ]
    node = {k: v for k, v in net.items() if k not in NET_COMMON_KEYS}
    message = _unknown_arguments("model.net", node, get_spec(arch).builder, ())
    errors += [message] if message else []
    return errors


def _factory(cfg: DictConfig, group: str, supplied: Sequence[str]) -> list[str]:
    from hydra.utils import get_object

    node = _select(cfg, group)
    if node is _ABSENT or node is None or "_target_" not in node:
        return []
    target_name = node["_target_"]
    try:
        target = get_object(str(target_name))
    except Exception:
        return [f"{group}._target_={target_name!r} cannot be imported (a typo in the path?)"]
    if not callable(target):
        return [f"{group}._target_={target_name!r} is not a class or function"]
    message = _unknown_arguments(group, dict(node), target, supplied)
    return [message] if message else []


# Keys that must hold numbers (null allowed where noted by the config); a string such as
# `optimizer.lr=abc` would otherwise fail deep inside torch without naming the key.
NUMERIC_KEYS = (
    "seed",
    "trainer.max_epochs",
    "trainer.min_epochs",
    "model.input_size",
    "model.label_smoothing",
    "model.net.width_mult",
    "model.net.dropout",
    "model.net.bn_momentum",
    "dataset.batch_size",
    "dataset.eval_batch_size",
    "dataset.num_workers",
    "dataset.val_fraction",
    "dataset.input_size",
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.momentum",
    "scheduler.warmup_epochs",
    "scheduler.lrf",
    "scheduler.pct_start",
    "dataset.test_fraction",
    "dataset.brightness",
    "dataset.cache_budget_mb",
    "callbacks.last_checkpoint.every_n_train_steps",
    "callbacks.bn_recalibration.num_batches",
)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(cfg: DictConfig) -> list[str]:
    errors = []
    for key in NUMERIC_KEYS:
        value = _select(cfg, key)
        if value is _ABSENT or value is None or _is_number(value):
            continue
        errors.append(f"{key}={value!r} must be a number")
    return errors


# The largest seed Lightning's seed_everything accepts (a uint32).
MAX_SEED = 2**32 - 1
# Numeric keys and the range a run needs them in: (key, holds, the range in words). Checked
# when the config is composed, so a value torch or Lightning would reject only when training
# starts (after the dataset scan, with a half-made run folder) fails at once, named.
DOMAINS: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("seed", lambda v: 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}"),
    ("optimizer.lr", lambda v: v > 0, "> 0"),
    ("optimizer.weight_decay", lambda v: v >= 0, ">= 0"),
    ("optimizer.momentum", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("model.label_smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("model.net.dropout", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("model.net.bn_momentum", lambda v: 0 < v <= 1, "in (0, 1] (or null: the network's own)"),
    ("dataset.batch_size", lambda v: v >= 1, ">= 1"),
    ("dataset.eval_batch_size", lambda v: v >= 1, ">= 1 (or null)"),
    ("dataset.num_workers", lambda v: v >= 0, ">= 0 (or null: chosen from the CPU count)"),
    ("dataset.val_fraction", lambda v: 0 < v < 1, "in (0, 1)"),
    ("dataset.test_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("dataset.brightness", lambda v: v >= 0, ">= 0"),
    ("dataset.cache_budget_mb", lambda v: v >= 0, ">= 0"),
    ("scheduler.lrf", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("scheduler.warmup_epochs", lambda v: v >= 0, ">= 0"),
    ("scheduler.pct_start", lambda v: 0 < v < 1, "in (0, 1)"),
    ("callbacks.last_checkpoint.every_n_train_steps", lambda v: v >= 1, ">= 1 (or null)"),
    (
        "callbacks.bn_recalibration.num_batches",
        lambda v: v >= 1,
        ">= 1 (to turn the recalibration off: callbacks.bn_recalibration=null)",
    ),
)
# Keys that must be whole numbers.
INTEGER_KEYS = (
    "seed",
    "dataset.batch_size",
    "dataset.eval_batch_size",
    "dataset.num_workers",
    "callbacks.last_checkpoint.every_n_train_steps",
    "callbacks.bn_recalibration.num_batches",
)


def _domains(cfg: DictConfig) -> list[str]:
    errors = []
    for key, holds, allowed in DOMAINS:
        value = _select(cfg, key)
        if not _is_number(value):
            continue  # absent, null, or reported by _numbers
        if key in INTEGER_KEYS and not isinstance(value, int):
            errors.append(f"{key}={value!r} must be a whole number ({allowed})")
        elif not holds(value):
            errors.append(f"{key}={value!r} is out of range: it must be {allowed}")
    scale = _select(cfg, "dataset.scale")
    if scale is not _ABSENT and scale is not None:
        values = list(scale) if not isinstance(scale, (int, float, str)) else [scale]
        numbers = [float(v) for v in values if _is_number(v)]
        if not (len(values) == len(numbers) == 2 and 0 < numbers[0] <= numbers[1] <= 1):
            errors.append(
                f"dataset.scale={values!r} must be two numbers [min, max] with "
                "0 < min <= max <= 1 (the crop's share of the image area)"
            )
    return errors


def _ranges(cfg: DictConfig) -> list[str]:
    """Values that compose and train but give a meaningless run."""
    from mbv3_lightning.models.registry import get_spec, list_models

    errors = _domains(cfg)
    epochs = _select(cfg, "trainer.max_epochs")
    if _is_number(epochs) and epochs < 1:
        errors.append(
            f"trainer.max_epochs={epochs} trains nothing; give 1 or more "
            "(to only test a checkpoint use `mbv3 evaluate ckpt_path=...`)"
        )
    width = _select(cfg, "model.net.width_mult")
    if _is_number(width) and width <= 0:
        errors.append(f"model.net.width_mult={width} must be > 0 (1.0 = the paper's width)")
    arch = _select(cfg, "model.net.arch")
    size = _select(cfg, "model.input_size")
    if arch in list_models() and _is_number(size):
        minimum = get_spec(arch).min_input_size
        if size < minimum:
            errors.append(
                f"model.input_size={size} is too small for {arch}: it needs at least "
                f"{minimum} px (null = its default, {get_spec(arch).input_size} px)"
            )
    return errors


def config_errors(cfg: DictConfig) -> list[str]:
    """Every invalid choice in ``cfg`` (keys it does not have are skipped), one line each."""
    errors = [
        _freeze(cfg),
        _choice(cfg, "dataset.bad_images", BAD_IMAGE_POLICIES),
        _choice(cfg, "dataset.balance", BALANCE_MODES),
        _choice(cfg, "dataset.cache", CACHE_CHOICES),
        _choice(cfg, "dataset.protocol", PROTOCOLS),
        _choice(cfg, "dataset.preprocess", PREPROCESSING),
        _choice(cfg, "dataset.augment_on", AUGMENT_ON),
        _choice(cfg, "channels_last", CHANNELS_LAST_CHOICES),
        _choice(cfg, "callbacks.bn_recalibration.transform", CALIBRATION_TRANSFORMS),
    ]
    found = [e for e in errors if e]
    found += _numbers(cfg)
    found += _ranges(cfg)
    found += _net(cfg)
    found += _factory(cfg, "optimizer", OPTIMIZER_SUPPLIED)
    found += _factory(cfg, "scheduler", SCHEDULER_SUPPLIED)
    return found


def check_config(cfg: DictConfig, where: str = "") -> None:
    """Raise :class:`ConfigError` listing every invalid choice in ``cfg``."""
    errors = config_errors(cfg)
    if errors:
        heading = f"Invalid configuration{where}:"
        raise ConfigError("\n".join([heading, *(f"  {e}" for e in errors)]))


def _cell_configs(config: DictConfig) -> list[tuple[str, DictConfig]]:
    """The composed config of every cell of a basic-sweeper grid (empty for other sweepers)."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    from mbv3_lightning.cli.config import composition_problem
    from mbv3_lightning.sweeps.cells import expand_grid

    grid = expand_grid(config)
    if not grid or not GlobalHydra.instance().is_initialized():
        return []
    name = config.hydra.job.config_name
    cells = []
    for number, overrides in enumerate(grid):
        where = f" (cell {number}: {' '.join(overrides)})"
        try:
            cell = compose(config_name=name, overrides=list(overrides))
        except HydraException as error:  # Hydra would only warn, and run the other cells
            raise ConfigError(f"mbv3 {name}{where}: {composition_problem(error)}") from None
        cells.append((where, cell))
    return cells


class ConfigCheck(Callback):
    """Hydra callback: stop with the list of invalid choices, and (for one run) of the paths
    the command could not read, before any job starts or any run folder is made.

    Hydra turns a callback's exceptions into warnings, so a failed check exits (``SystemExit``,
    status 2: a user's mistake).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        problems = []
        try:
            check_config(config)
        except ConfigError as error:
            problems.append(str(error))
        # each command's config is named after it (conf/predict.yaml: `mbv3 predict`)
        command = str(OmegaConf.select(config, "hydra.job.config_name", default="train"))
        problems += [f"mbv3 {command}: {problem}" for problem in path_errors(config, command)]
        if problems:
            usage_error("\n".join(problems))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Paths are left to each cell: a sweep's cells stand alone (one missing dataset fails
        # its own cells, recorded in sweep.json) and the smoke study writes its data in a cell.
        try:
            check_config(config)
            for where, cell in _cell_configs(config):
                check_config(cell, where)
        except ConfigError as error:
            usage_error(str(error))
