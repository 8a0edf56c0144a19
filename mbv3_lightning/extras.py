"""Optional parts of the package, and the one ``pip install`` line that brings each.

``pip install mbv3-lightning`` trains, evaluates and predicts with PyTorch and logs to CSV and
W&B. The web page, ONNX export, the label review, the Optuna search and the phone runtimes
need packages a training machine does not (Streamlit alone brings dozens, LiteRT's converter
jax and transformers), so they are extras of ``pyproject.toml``; a command that needs a missing
one stops with the install line instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Extra:
    """One extra of pyproject.toml: the modules it brings and what they are for."""

    name: str
    modules: tuple[str, ...]
    purpose: str
    # A second pip line for packages pip cannot install together with the extra (see LITERT_TORCH)
    then: str = ""

    @property
    def install(self) -> str:
        then = f" && {self.then}" if self.then else ""
        return (
            f'pip install "mbv3-lightning[{self.name}]"{then} (from a checkout: '
            f'pip install -c requirements/constraints.txt -e ".[{self.name}]"{then})'
        )


# litert-torch 0.10 (the only series that accepts torch 2.14) needs litert-converter 0.5, which
# pins xdsl 0.28, which caps typing-extensions below what pydantic (wandb) needs: pip cannot
# resolve that, so the three come without their dependencies after the [tflite] extra, which
# brings the rest. The converter runs with the newer typing-extensions (the slow tests of
# tests/test_phone_export.py prove it).
LITERT_TORCH = "pip install --no-deps litert-torch==0.10.0 litert-converter==0.5.0 xdsl==0.28.0"


EXTRAS = {
    extra.name: extra
    for extra in (
        Extra("app", ("streamlit",), "the web page (Streamlit)"),
        Extra("export", ("onnx", "onnxruntime"), "ONNX export and ONNX Runtime"),
        Extra("review", ("cleanlab",), "the label review (cleanlab)"),
        Extra("search", ("optuna",), "the Optuna search"),
        Extra("mobile", ("executorch", "coremltools"), "the phone runtimes ExecuTorch and Core ML"),
        Extra(
            "tflite",
            ("ai_edge_litert", "litert_torch"),
            "LiteRT (its .tflite interpreter and the litert-torch converter)",
            then=LITERT_TORCH,
        ),
    )
}


class MissingExtraError(ImportError):
    """An optional part of the package is not installed; the message is the install line."""


def has_module(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # sys.modules[module] is None: imports of it are switched off
        return False


def missing_modules(name: str, modules: Sequence[str] | None = None) -> list[str]:
    """The modules of extra ``name`` (or those of ``modules``, a part of it) that cannot be
    imported here."""
    wanted = EXTRAS[name].modules if modules is None else modules
    unknown = set(wanted) - set(EXTRAS[name].modules)
    if unknown:
        raise ValueError(f"{sorted(unknown)} are not modules of the extra '{name}'.")
    return [module for module in wanted if not has_module(module)]


def require_extra(name: str, task: str, modules: Sequence[str] | None = None) -> None:
    """Raise :class:`MissingExtraError` with the install line when extra ``name`` is missing.

    ``task`` is what the user asked for, in their words (``mbv3 app``, ``format=onnx``);
    ``modules``: the part of the extra the task uses (running a ``.tflite`` file needs LiteRT's
    interpreter, not its converter), all of it by default.
    """
    missing = missing_modules(name, modules)
    if missing:
        extra = EXTRAS[name]
        raise MissingExtraError(
            f"{task} needs {extra.purpose}, which is not installed ({', '.join(missing)}). "
            f"Install it: {extra.install}"
        )
