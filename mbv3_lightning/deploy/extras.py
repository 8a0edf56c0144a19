"""Optional runtimes (ExecuTorch, LiteRT) and the one-line install that brings each.

The phone runtimes are large (LiteRT's converter pulls in jax and transformers), so they are
optional extras of the package; a command that needs a missing one stops with the
``pip install`` line instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib.util

# The extras of pyproject.toml; from a checkout, through the tested versions.
MOBILE_INSTALL = 'pip install -c requirements/constraints.txt -e ".[mobile]"'
TFLITE_INSTALL = 'pip install -c requirements/constraints.txt -e ".[tflite]"'
# litert-torch 0.10 needs litert-converter 0.5, which pins xdsl 0.28, which caps
# typing-extensions below the version this project's pydantic and wandb require; pip cannot
# resolve that, so the three come without their dependencies (the [tflite] extra brings the
# rest). The converter runs with the newer typing-extensions: the tflite tests prove it.
LITERT_CONVERTER_INSTALL = (
    f"{TFLITE_INSTALL} && pip install --no-deps litert-torch==0.10.0 litert-converter==0.5.0 "
    "xdsl==0.28.0"
)

_NEEDS = {
    # module to import: (what it is for, the install line)
    "executorch": ("ExecuTorch (.pte files)", MOBILE_INSTALL),
    "coremltools": ("coremltools (Core ML .mlpackage files)", MOBILE_INSTALL),
    "ai_edge_litert": ("the LiteRT interpreter (.tflite files)", TFLITE_INSTALL),
    "litert_torch": ("litert-torch (the PyTorch to LiteRT converter)", LITERT_CONVERTER_INSTALL),
}


class MissingExtraError(ImportError):
    """An optional runtime is not installed; the message is the install line."""


def has_module(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # sys.modules[module] is None: imports of it are switched off
        return False


def require(module: str, task: str) -> None:
    """Raise :class:`MissingExtraError` naming the install line when ``module`` is missing.

    ``task`` is what the user asked for, in their words (``format=executorch``).
    """
    if has_module(module):
        return
    what, install = _NEEDS[module]
    raise MissingExtraError(f"{task} needs {what}, which is not installed. Install it: {install}")
