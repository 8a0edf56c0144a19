"""The random generators that shuffle batches and draw augmentations, saved and restored.

A resumed run must see the batches an unbroken run would have seen, so checkpoints keep these
states (as tensors and plain data: a checkpoint holding them still loads weights-only).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import torch

RngState = dict[str, Any]


def capture_rng() -> RngState:
    """The Python, NumPy and torch (CPU, and CUDA where present) generator states."""
    _, keys, pos, has_gauss, gauss = cast(
        tuple[str, np.ndarray, int, int, float], np.random.get_state()
    )
    state: RngState = {
        "python": random.getstate(),
        "numpy": (torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: RngState) -> None:
    """Set the generators to a :func:`capture_rng` state."""
    random.setstate(state["python"])
    keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Inside: every generator seeded with ``seed``; after: the states from before, whatever
    happened inside. Work done in between (e.g. drawing extra batches) then leaves the
    training's random stream, and so its batches and a resumed run's, as they would have been.
    """
    state = capture_rng()
    try:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        yield
    finally:
        restore_rng(state)
