"""Unbalanced classes (``dataset.balance``): loss weights or a balanced sampler."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import WeightedRandomSampler

# none | weights (inverse-frequency loss weights) | sampler (draw classes equally often)
BALANCE_MODES = ("none", "weights", "sampler")


def inverse_frequency_weights(counts: Sequence[int]) -> list[float]:
    """Loss weights per class, inversely proportional to its image count, with mean 1."""
    total = sum(counts)
    return [total / (len(counts) * count) for count in counts]


def balanced_sampler(
    labels: Sequence[int], counts: Sequence[int], seed: int
) -> WeightedRandomSampler:
    """Draw every class equally often in expectation (with replacement), seeded."""
    weights = [1.0 / counts[label] for label in labels]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)
