"""The memory layout a network's batches use (``channels_last: auto | true | false``)."""

from __future__ import annotations

import torch

# channels_last=auto: NHWC batches where they trained faster: on the CPU for every registry
# model, and contiguous on CUDA, where mobilenet_v3_small trained slower in NHWC with
# bf16-mixed (benchmarks/memory_format.py and benchmarks/device_defaults.py; numbers in
# benchmarks/results/).
CHANNELS_LAST_BY_DEVICE = {"cpu": True, "cuda": False}
CHANNELS_LAST_CHOICES = ("auto", True, False)


def batch_memory_format(setting: bool | str, device: str | torch.device) -> torch.memory_format:
    """The layout a run on ``device`` trains and evaluates in under the ``channels_last``
    setting (``true``, ``false`` or ``auto``: per device, see ``CHANNELS_LAST_BY_DEVICE``)."""
    channels_last = setting
    if setting == "auto":
        channels_last = CHANNELS_LAST_BY_DEVICE.get(torch.device(device).type, True)
    return torch.channels_last if channels_last else torch.contiguous_format
