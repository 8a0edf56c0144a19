"""BatchNorm statistics re-estimated for the weights as they are ("precise BN").

Training keeps each BatchNorm layer's running mean and variance as an exponential average of
batch statistics, computed with weights that have changed since. From scratch the weights
move faster than that average follows, and evaluation mode normalises with the stale values:
a two-epoch demo run scored chance on its test set with weights that, given fresh statistics,
scored above 0.9 (docs/batchnorm-recalibration.md). Re-estimating the statistics over
training batches with the current weights, as pycls and detectron2 do ("precise BN"),
evaluates the network that was trained. Plain torch: the Lightning callback
(``training/bn_recalibration.py``) draws the batches and averages over processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mbv3_lightning.models.freeze import is_frozen_batchnorm


def recalibrated_layers(net: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers whose running statistics training updates: those that track
    them and are not frozen (a frozen block keeps the statistics it was pretrained with)."""
    return [
        module
        for module in net.modules()
        if isinstance(module, _BatchNorm)
        and module.track_running_stats
        and not is_frozen_batchnorm(module)
    ]


def estimate_statistics(
    layers: list[_BatchNorm], batches: Iterable[Any], forward: Callable[[Any], object]
) -> int:
    """Set ``layers``' running mean and variance to the average of their batch statistics
    over ``batches``; returns the number of batches.

    ``forward`` runs the network on one batch. The layers are put in training mode with a
    cumulative average (``momentum=None``) and no gradients; every other module keeps its
    mode (dropout stays off, as in evaluation). Afterwards each layer has its momentum, mode
    and ``num_batches_tracked`` back, so training continues as it would have. A layer that no
    batch reached (e.g. an auxiliary head that only runs in training mode) keeps its statistics.
    """
    saved = [
        (bn.momentum, bn.training, _batches_tracked(bn).clone(), _statistics(bn)) for bn in layers
    ]
    for bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    count = 0
    try:
        with torch.no_grad():
            for batch in batches:
                forward(batch)
                count += 1
    finally:
        for bn, (momentum, training, tracked, before) in zip(layers, saved, strict=True):
            if count == 0 or int(_batches_tracked(bn)) == 0:
                _set_statistics(bn, before)
            bn.momentum = momentum
            bn.train(training)
            _batches_tracked(bn).copy_(tracked)
    return count


# The buffers below exist on every layer recalibrated_layers() returns (track_running_stats).
def _batches_tracked(bn: _BatchNorm) -> torch.Tensor:
    assert bn.num_batches_tracked is not None
    return bn.num_batches_tracked


def _statistics(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    assert bn.running_mean is not None and bn.running_var is not None
    return bn.running_mean.clone(), bn.running_var.clone()


def _set_statistics(bn: _BatchNorm, values: tuple[torch.Tensor, torch.Tensor]) -> None:
    assert bn.running_mean is not None and bn.running_var is not None
    bn.running_mean.copy_(values[0])
    bn.running_var.copy_(values[1])


def average_over_processes(
    layers: list[_BatchNorm], count: int, all_reduce_sum: Callable[[torch.Tensor], torch.Tensor]
) -> int:
    """Set ``layers``' statistics to every process's, weighted by its number of batches
    (``count``); returns the batches of all processes. ``all_reduce_sum`` sums a tensor over
    the processes (e.g. the Lightning strategy's ``reduce(tensor, reduce_op="sum")``). A
    process that estimated nothing weighs nothing; if none did, the statistics stay."""
    flat = _flat_statistics(layers)
    total = int(all_reduce_sum(torch.tensor([float(count)], device=flat.device)).item())
    summed = all_reduce_sum(flat * count)
    if total:
        _load_flat_statistics(layers, summed / total)
    return total


def _flat_statistics(layers: list[_BatchNorm]) -> torch.Tensor:
    """Every layer's running mean and variance, concatenated (one tensor to all-reduce)."""
    return torch.cat([torch.cat(_statistics(bn)) for bn in layers])


def _load_flat_statistics(layers: list[_BatchNorm], flat: torch.Tensor) -> None:
    offset = 0
    for bn in layers:
        size = bn.num_features
        mean = flat[offset : offset + size]
        var = flat[offset + size : offset + 2 * size]
        _set_statistics(bn, (mean, var))
        offset += 2 * size
