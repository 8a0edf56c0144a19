"""A training DataLoader that a checkpoint saved inside an epoch continues exactly.

The DataModule saves the loader's :meth:`~ResumableLoader.position` in every checkpoint and,
when a run resumes, hands it back (:meth:`~ResumableLoader.resume_from`) before the epoch's
iterator is made. (Not through Lightning's hooks for stateful loaders: a run whose schedule
needs its step count makes the iterator before Lightning restores loop states, so their state
never reached the loader.) The loader records where the epoch's random draws started (the
shuffle order and, with ``num_workers=0``, the augmentations come from the process's torch
generator) and the generator state before each batch fetched ahead of training. Resuming, it
draws the epoch's order again from the same state, skips the batches already trained on and
reproduces the ones fetched ahead, so the resumed run sees the batches an unbroken run would
have seen. With worker processes the order and the split are the same but the augmentations
are drawn anew (workers keep generators of their own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from mbv3_lightning.data.random_state import RngState, capture_rng, restore_rng


class ResumableLoader(DataLoader):
    """A :class:`DataLoader` whose position inside an epoch is part of the checkpoint.

    ``trained_batches``: how many batches of the current epoch the training loop has trained
    on (Lightning's batch progress), read when a checkpoint is written.
    """

    def __init__(self, *args: Any, trained_batches: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trained_batches = trained_batches
        self._epoch_rng: RngState | None = None
        # torch's generator state before each batch still in flight: the project's pipeline
        # (shuffle, crops, flips) draws from torch's generator only, and this runs per batch.
        self._in_flight: dict[int, torch.Tensor] = {}
        self._yielded = 0
        self._resume: dict[str, Any] | None = None

    def position(self) -> dict[str, Any]:
        """Where the current epoch is: its starting generator states, the batches trained on,
        the generator state before each batch fetched ahead, and the states now."""
        trained = int(self.trained_batches())
        if trained == 0:  # at an epoch's start or end: nothing to continue
            return {}
        return {
            "epoch_rng": self._epoch_rng,
            "trained": trained,
            "in_flight": {i: s for i, s in self._in_flight.items() if i >= trained},
            "yielded": self._yielded,
            "rng_now": capture_rng(),
        }

    def resume_from(self, position: dict[str, Any]) -> None:
        """Make the next epoch's iterator continue from a saved :meth:`position`."""
        self._resume = position if position.get("epoch_rng") is not None else None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        resume, self._resume = self._resume, None
        if resume is not None:
            restore_rng(resume["epoch_rng"])
        self._epoch_rng = capture_rng()
        self._in_flight, self._yielded = {}, 0
        batches = super().__iter__()
        start = resume["trained"] if resume is not None else 0
        for _ in range(start):  # trained on before the checkpoint: drawn again, not used
            next(batches)
        return self._batches(batches, start, resume)

    def _batches(
        self, batches: Iterator[Any], index: int, resume: dict[str, Any] | None
    ) -> Iterator[Any]:
        in_flight = resume["in_flight"] if resume is not None else {}
        end_of_replay = resume["yielded"] if resume is not None else 0
        while True:
            if index in in_flight:
                torch.set_rng_state(in_flight[index])  # a batch fetched before the checkpoint
            elif resume is not None and index == end_of_replay:
                restore_rng(resume["rng_now"])  # the first batch fetched after it
            state = torch.get_rng_state()
            try:
                batch = next(batches)
            except StopIteration:
                return
            self._in_flight = {i: s for i, s in self._in_flight.items() if i >= index - 4}
            self._in_flight[index] = state
            index += 1
            self._yielded = index
            yield batch
