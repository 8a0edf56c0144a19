"""The one way this project reads a checkpoint or weights file: torch's weights-only unpickler.

A ``.ckpt`` is a pickle, and unpickling can run code (a ``__reduce__`` that calls ``os.system``).
``torch.load`` only refuses that when ``weights_only=True``, and that is its default from torch
2.6 on; the package allows older versions, and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns the
default off again. Passing ``weights_only=True`` explicitly holds in every case (the variable
only overrides call sites that leave it unset), so every entry point reads files through here.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class UnsafeCheckpointError(ValueError):
    """A checkpoint holds objects other than tensors and plain data: it is refused unread."""


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that name the file.

    ``mmap=True`` reads only the entries that are used (e.g. the epoch of a large checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint '{path}' does not exist or is not a file.")
    try:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's text is long and suggests weights_only=False; keep the line that says what
        # was refused (e.g. "unsupported GLOBAL posix.system").
        lines = [line.strip() for line in str(error).splitlines()]
        detail = next(
            (line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")),
            "not a weights-only pickle",
        )
        raise UnsafeCheckpointError(
            f"Refusing to load '{path}': torch's weights-only reader rejected it ({detail}). "
            "It holds Python objects other than tensors and plain data (reading those could "
            "run code from the file) or is not a checkpoint at all. Only load checkpoints this "
            "project wrote (<run dir>/checkpoints/*.ckpt)."
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise UnsafeCheckpointError(_unreadable(path, error)) from None


def _unreadable(path: Path, error: BaseException) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"'{path}' is not a readable checkpoint (truncated, or not a torch file): {first}"
