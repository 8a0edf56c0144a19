"""Optional parts of the package, and the one ``pip install`` line that brings each.

``pip install mbv3-lightning`` trains, evaluates and predicts with PyTorch and logs to CSV and
W&B. The web page, ONNX export, the label review and the Optuna search need packages a
training machine does not (Streamlit alone brings dozens), so they are extras of
``pyproject.toml``; a command that needs a missing one stops with the install line instead of
an ImportError traceback.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Extra:
    """One extra of pyproject.toml: the modules it brings and what they are for."""

    name: str
    modules: tuple[str, ...]
    purpose: str

    @property
    def install(self) -> str:
        return (
            f'pip install "mbv3-lightning[{self.name}]" (from a checkout: '
            f'pip install -c requirements/constraints.txt -e ".[{self.name}]")'
        )


EXTRAS = {
    extra.name: extra
    for extra in (
        Extra("app", ("streamlit",), "the web page (Streamlit)"),
        Extra("export", ("onnx", "onnxruntime"), "ONNX export and ONNX Runtime"),
        Extra("review", ("cleanlab",), "the label review (cleanlab)"),
        Extra("search", ("optuna",), "the Optuna search"),
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


def missing_modules(name: str) -> list[str]:
    """The modules of extra ``name`` that cannot be imported here."""
    return [module for module in EXTRAS[name].modules if not has_module(module)]


def require_extra(name: str, task: str) -> None:
    """Raise :class:`MissingExtraError` with the install line when extra ``name`` is missing.

    ``task`` is what the user asked for, in their words (``mbv3 app``, ``format=onnx``).
    """
    missing = missing_modules(name)
    if missing:
        extra = EXTRAS[name]
        raise MissingExtraError(
            f"{task} needs {extra.purpose}, which is not installed ({', '.join(missing)}). "
            f"Install it: {extra.install}"
        )
