"""`mbv3 <command> [overrides]`: one console script for every command, like `yolo classify train`.

``mbv3 train model=mobilenet_v3_large``, ``mbv3 predict ckpt_path=... inputs=...``: the
command, then Hydra overrides (or the command's own arguments), exactly as after
``python -m mbv3_lightning.<command>``, which keeps working. Before handing over, the overrides
of a Hydra command are composed once here, so a mistyped key gets a near-miss suggestion and a
missing required value a usage line, instead of a traceback.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from mbv3_lightning.cli.exit_status import ENVIRONMENT_EXIT_CODE, usage_error
from mbv3_lightning.extras import MissingExtraError, require_extra


@dataclass(frozen=True)
class Command:
    module: str  # the module whose `main()` runs the command
    usage: str  # arguments after `mbv3 <command>`
    summary: str
    config: str | None = None  # conf/<config>.yaml for Hydra commands
    extra: str | None = None  # the pyproject extra it needs (mbv3_lightning.extras)


# One line per command; a command whose module is not installed is left out of the listing.
COMMANDS: dict[str, Command] = {
    "train": Command(
        "mbv3_lightning.cli.train",
        "[-m] [key=value ...]",
        "train one configuration, or a grid with -m",
        "train",
    ),
    "predict": Command(
        "mbv3_lightning.cli.predict",
        "ckpt_path=<ckpt|onnx|pt|pte|tflite> inputs=<file|folder|glob> [top_k=5]",
        "classify images with a trained or exported model",
        "predict",
    ),
    "evaluate": Command(
        "mbv3_lightning.cli.evaluate",
        "ckpt_path=<ckpt|onnx|pt|pte|tflite> [dataset=...]",
        "re-test a checkpoint or an exported model on a dataset's test split",
        "evaluate",
    ),
    "export": Command(
        "mbv3_lightning.cli.export",
        "ckpt_path=<ckpt> [format=onnx|torchscript|executorch|tflite|coreml] [quantize=int8]",
        "export a checkpoint for deployment",
        "export",
        extra="export",
    ),
    "profile": Command(
        "mbv3_lightning.cli.profile",
        "[model=<arch>] [-m model=a,b]",
        "parameters, MACs, size and latency of an architecture",
        "profile",
    ),
    "report": Command(
        "mbv3_lightning.cli.report",
        "<sweep_dir> [report.out=DIR] [report.wandb=true]",
        "tables and figures for a finished sweep",
    ),
    "check": Command(
        "mbv3_lightning.cli.check",
        "[dataset=<name>] [dataset.root=...]",
        "audit a dataset before training on it",
        "check",
    ),
    "review": Command(
        "mbv3_lightning.cli.review",
        "[key=value ...]",
        "review a run's predictions",
        "review",
        extra="review",
    ),
    "app": Command(
        "mbv3_lightning.cli.app",
        "ckpt_path=<ckpt|onnx|pt|pte|tflite> [port=8501] [address=127.0.0.1] [top_k=5]",
        "a web page that classifies uploaded images",
        extra="app",
    ),
}

HELP_FLAGS = ("-h", "--help")
VERSION_FLAGS = ("-V", "--version")
# What `mbv3 --version` reports (package: module): this package and the three that decide how
# a run behaves.
VERSIONED = {
    "mbv3-lightning": "mbv3_lightning",
    "torch": "torch",
    "lightning": "lightning",
    "hydra-core": "hydra",
}


def available() -> dict[str, Command]:
    """The commands whose module this installation has."""
    return {
        name: c for name, c in COMMANDS.items() if importlib.util.find_spec(c.module) is not None
    }


def overview() -> str:
    commands = available()
    width = max(len(n) for n in commands)
    lines = ["usage: mbv3 <command> [overrides ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {c.summary}" for name, c in commands.items()]
    lines += [
        "",
        "`mbv3 <command> --help` lists a command's options; `mbv3 --version` the versions.",
    ]
    return "\n".join(lines)


def versions() -> str:
    """``mbv3 --version``: one line per package, as imported (torch's says its CUDA build,
    e.g. ``2.5.1+cu124``, which the installed metadata may leave out)."""
    lines = []
    for package, module in VERSIONED.items():
        try:
            version = importlib.import_module(module).__version__
        except ImportError:
            version = "not installed"
        lines.append(f"{package} {version}")
    lines.append(f"python {platform.python_version()}")
    return "\n".join(lines)


def usage(name: str) -> str:
    return f"usage: mbv3 {name} {COMMANDS[name].usage}"


def _dotted_keys(node: object, prefix: str = "") -> list[str]:
    if not isinstance(node, dict):
        return []
    keys = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        keys.append(path)
        keys += _dotted_keys(value, f"{path}.")
    return keys


def _compose(config: str, overrides: Sequence[str]) -> DictConfig:
    from mbv3_lightning.cli.config import compose_config

    return compose_config(config, overrides, hydra_runtime=True)


def suggest(key: str, known: Sequence[str]) -> str | None:
    """The known key closest to a mistyped one (``trainer.max_epoch`` -> ``trainer.max_epochs``)."""
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if match:
        return match[0]
    # A right leaf under a wrong or missing parent: `max_epoch=3` -> trainer.max_epochs
    leaf = key.rsplit(".", 1)[-1]
    leaves = {k.rsplit(".", 1)[-1]: k for k in known}
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.8)
    return leaves[close[0]] if close else None


def check_overrides(name: str, overrides: Sequence[str]) -> str | None:
    """Compose ``name``'s config with ``overrides``; a message for the user if that fails or
    leaves a required value (``???``) unset, else None."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from mbv3_lightning.cli.config import composition_problem

    command = COMMANDS[name]
    if command.config is None:
        return None  # no Hydra config to check (report, app parse their own arguments)
    try:
        cfg = _compose(command.config, overrides)
    except (HydraException, OmegaConfBaseException) as err:
        text = str(err)
        bad = re.search(r"Could not override '([^']+)'", text) or re.search(
            r"Key '([^']+)' is not in struct", text
        )
        if bad:
            key = bad.group(1).lstrip("+~")
            known = _dotted_keys(OmegaConf.to_container(_compose(command.config, [])))
            hint = suggest(key, known)
            did_you_mean = f"; did you mean {hint}?" if hint else ""
            return (
                f"mbv3 {name}: '{key}' is not a key of the {command.config} config"
                f"{did_you_mean} (a new key needs a leading '+': +{key}=...)"
            )
        return f"mbv3 {name}: {composition_problem(err)}"
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        return f"mbv3 {name}: missing required value(s): {', '.join(missing)}"
    return None


def _group_options(config: str, groups: Sequence[str]) -> dict[str, list[str]]:
    """The choices of each config group, as Hydra finds them (conf/ and experiments/)."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from mbv3_lightning.cli.config import config_dir

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            return {g: sorted(loader.get_group_options(g)) for g in groups}
    finally:
        GlobalHydra.instance().clear()


# A reST role (:func:`pkg.f`, :mod:`~pkg.mod`) and an inline literal (``x``) in a docstring
_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")


def plain_text(doc: str) -> str:
    """A docstring as help text: roles become the name they point at and double-backtick
    literals single-backtick ones, as in the rest of the help."""
    text = _ROLE.sub(
        lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`", doc
    )
    return text.replace("``", "`")


def command_help(name: str) -> str:
    """Usage plus the command's own options (its composed config, or its module's text)."""
    command = COMMANDS[name]
    lines = [usage(name), "", command.summary + "."]
    if command.config is None:
        doc = importlib.import_module(command.module).__doc__ or ""
        lines += ["", plain_text(doc.split("\n\n", 1)[-1].strip())]
        return "\n".join(lines)
    from hydra.core.hydra_config import HydraConfig

    cfg = _compose(command.config, [])
    choices = HydraConfig.get().runtime.choices
    groups = {g: c for g, c in choices.items() if not g.startswith("hydra") and "/" not in g}
    if groups:
        options = _group_options(command.config, list(groups))
        lines += ["", "config groups (group=choice; * = default):"]
        for group in sorted(groups):
            shown = [f"{o}*" if o == groups[group] else o for o in options[group]]
            lines.append(f"  {group}: {', '.join(shown) or '-'}")
    values = OmegaConf.to_container(cfg, resolve=False)  # `???` marks a required value
    assert isinstance(values, dict)
    own = {k: v for k, v in values.items() if k not in groups}
    lines += ["", "options (key=value; ??? = required):", OmegaConf.to_yaml(own).rstrip()]
    if groups:
        lines += ["", f"`mbv3 {name} <group>.<key>=value` changes a key inside a group."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``mbv3 <command> [overrides]``: check the overrides, then run the command's entry."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        usage_error(overview())
    if args[0] in HELP_FLAGS:
        print(overview())
        raise SystemExit(0)
    if args[0] in VERSION_FLAGS:
        print(versions())
        raise SystemExit(0)
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, list(available()), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        usage_error(f"mbv3: unknown command '{name}'.{hint}\n\n{overview()}")
    command = COMMANDS[name]
    if importlib.util.find_spec(command.module) is None:
        usage_error(f"mbv3: '{name}' is not part of this installation.\n\n{overview()}")
    if any(a in HELP_FLAGS for a in rest):
        print(command_help(name))
        raise SystemExit(0)
    if command.extra is not None:
        try:
            require_extra(command.extra, f"mbv3 {name}")
        except MissingExtraError as error:
            # the environment lacks a package, as for other environment errors
            print(error, file=sys.stderr)
            raise SystemExit(ENVIRONMENT_EXIT_CODE) from None
    # Hydra's own flags (--cfg, -m, --multirun, ...) go straight through: a sweep's cells are
    # checked by the ConfigCheck callback before the first one starts.
    if command.config is not None and not any(a.startswith("-") for a in rest):
        problem = check_overrides(name, rest)
        if problem:
            usage_error(f"{problem}\n{usage(name)}")
    sys.argv = [f"mbv3 {name}", *rest]
    importlib.import_module(command.module).main()


if __name__ == "__main__":
    main()
