"""Training images/s fed by the real DataModule vs pre-decoded tensors in memory.

All variants run the same training step (mobilenet_v3_small at the demo's 100 px, batch 32,
one epoch of the bundled demo's training split); only what feeds the batches differs:
- ``tensors``: the batches already decoded, augmented and collated in RAM (the upper bound);
- ``datamodule``: the demo's DataModule as configured by default (RAM cache, workers);
- ``no_cache (torchvision.io)`` / ``no_cache (PIL)``: decoding every image every epoch.

On CUDA the step is the GPU trainer's (bf16 autocast, the device's default memory format) and
``datamodule`` is the GPU-fed pipeline ``trainer=gpu`` gets (``dataset.augment_on=auto``):
uint8 canvases from the loader, crop, flip and normalisation on the GPU, inside the timed step.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from benchmarks.timing import interleaved, median, mixed_precision, sync
from mbv3_lightning.cli.config import CONFIG_NAME, compose_config
from mbv3_lightning.data.images import ImageListDataset, load_rgb
from mbv3_lightning.models.memory_format import batch_memory_format
from mbv3_lightning.models.registry import create_model

GOAL = 0.90


class _PilDataset(ImageListDataset):
    """The same samples and transforms, decoded with PIL instead of torchvision.io."""

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.transform(TF.pil_to_tensor(load_rgb(path))), label


def _datamodule(**overrides: object):
    """The bundled demo's DataModule exactly as `python -m mbv3_lightning` builds it."""
    cfg = compose_config(CONFIG_NAME)
    dm = instantiate(cfg.dataset, input_size=100, **overrides)
    dm.setup("fit")
    return dm


def _device_images(images, device: str, datamodule) -> torch.Tensor:
    """A loader batch's images on ``device``; the GPU-fed pipeline's (canvases, boxes)
    are augmented there, as its DataModule does after the transfer."""
    if isinstance(images, (list, tuple)):
        return datamodule.device_augment(*(t.to(device, non_blocking=True) for t in images))
    return images.to(device, non_blocking=True)


def _epoch_seconds(loader_factory, device: str, epochs: int, datamodule=None) -> float:
    """Seconds for ``epochs`` passes over the loader with a real training step per batch."""
    torch.manual_seed(0)
    on_cuda = device.startswith("cuda")
    memory_format = batch_memory_format("auto", device)
    net = create_model("mobilenet_v3_small", 10).to(device, memory_format=memory_format).train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        for images, labels in loader_factory():
            images = _device_images(images, device, datamodule)
            images = images.contiguous(memory_format=memory_format)
            opt.zero_grad(set_to_none=True)
            # the precision trainer=gpu trains in (bf16-mixed)
            with mixed_precision(device, "bf16-mixed" if on_cuda else None):
                loss = F.cross_entropy(net(images), labels.to(device))
            loss.backward()
            opt.step()
    sync(device)
    return time.perf_counter() - start


def _loader_ms_per_image(loader_factory, repeats: int) -> float:
    """Median milliseconds per image to iterate the loader alone (decode, augment, collate)."""
    per_image = []
    for _ in range(repeats):
        start, images = time.perf_counter(), 0
        for _, labels in loader_factory():
            images += len(labels)
        per_image.append((time.perf_counter() - start) / images * 1000)
    return median(per_image)


def run(device: str, quick: bool) -> dict:
    default = _datamodule()
    uncached = _datamodule(cache=False)
    # the DataModule a GPU run gets: augmentation on the device
    fed = _datamodule(augment_on="device") if device.startswith("cuda") else default
    batches = list(default.train_dataloader())  # decoded + augmented once, kept in RAM
    pil = DataLoader(
        _PilDataset(uncached.datasets["train"].samples, uncached.datasets["train"].transform),
        batch_size=uncached.batch_size,
        shuffle=True,
        num_workers=uncached.workers,
        drop_last=True,
    )
    # An epoch of the demo lasts about 1.5 s, and single epochs of one variant varied by +-15%
    # here: two epochs per call and four calls (each variant first equally often) steady it.
    epochs, repeats = (1, 2) if quick else (2, 4)
    variants = {
        "tensors": lambda: batches,
        "datamodule": fed.train_dataloader,
        "no_cache (torchvision.io)": uncached.train_dataloader,
        "no_cache (PIL)": lambda: pil,
    }
    times = interleaved(
        {
            name: partial(_epoch_seconds, factory, device, epochs=epochs, datamodule=fed)
            for name, factory in variants.items()
        },
        repeats=repeats,
    )
    images = epochs * len(batches) * default.batch_size
    reference = images / median(times["tensors"])
    rows = [
        {
            "feed": name,
            "img_s": round(images / median(times[name]), 1),
            "ratio_to_tensors": round(images / median(times[name]) / reference, 3),
            "cache": default.cache if name == "datamodule" else name == "tensors",
            "augment_on": "device" if name == "datamodule" and fed.device_augment else "cpu",
            "workers": default.workers if name != "tensors" else 0,
        }
        for name in variants
    ]
    ratio = rows[1]["ratio_to_tensors"]
    step_ms = median(times["tensors"]) / images * 1000
    # The profile behind the ratios: what feeding costs per image next to the training step.
    profile_rows = [{"work": "training step (tensors feed)", "ms_per_image": round(step_ms, 3)}]
    for name, factory in variants.items():
        if name != "tensors":
            ms = _loader_ms_per_image(factory, repeats)
            profile_rows.append(
                {
                    "work": f"loader alone: {name}",
                    "ms_per_image": round(ms, 3),
                    "share_of_step": round(ms / step_ms, 3),
                }
            )
    return {
        "title": "Input pipeline: training images/s by what feeds the batches (demo, 100 px)",
        "goal": f"datamodule / tensors >= {GOAL}",
        "ratio": ratio,
        "met": ratio >= GOAL,
        "rows": rows,
        "tables": [{"title": "Per-image cost of the feeds, timed alone", "rows": profile_rows}],
        "root": str(Path(default.root)),
    }
