"""GPU ceiling: the project's training vs a bare loop vs the same step on tensors already there.

On a generated folder of real JPEGs in class folders (``train/<class>/*.jpg`` + ``val/``, made
from the bundled Fruits-360 photos by seeded flips, shifts, rotations and colour changes), three
variants train the same network at the same input size, batch size and precision:

- ``ceiling``: random tensors already on the device, the training step and nothing else
  (forward, label-smoothed cross-entropy, backward, the project's AdamW and one-cycle steps),
  under ``torch.autocast`` in the GPU trainer's bf16 and in the project's memory format;
- ``bare``: the loop users write: torchvision's ``datasets.ImageFolder`` and a ``DataLoader``
  (cores - 1 workers, pinned memory on CUDA, persistent workers), torchvision v2
  RandomResizedCrop + flip + ToDtype + Normalize on the CPU, the same step;
- ``project``: ``mbv3_lightning.training.run.run`` on the real config, ``dataset=image_folder``
  on the folder, ``trainer=gpu`` on CUDA (``trainer=cpu`` on the CPU), timed by
  :class:`ThroughputClock`, a callback added through the config.

Images/s count steady-state training steps only. With more than one epoch the first epoch is
the warm-up (workers starting, the project's RAM cache filling, cuDNN choosing kernels) and
every training step of the later epochs is timed; with one epoch (the CPU test sizes) the
first ``WARMUP_STEPS`` steps are skipped. Within an epoch the clock runs from the start of the
first timed step (its batch already loaded) to the end of the epoch's last step, after a
device synchronisation; validation, checkpoints and start-up are outside it. The random-tensor
ceiling skips ``CEILING_WARMUP`` steps and times the next ``ceiling_steps``.

The goal (mobilenet_v3_large, 224 px, batch 256, CUDA): project >= 0.90 of the ceiling. The
variants run one after the other (each is many seconds long), not interleaved.

Extra project overrides (e.g. ``dataset.augment_on=device``) come from ``run(overrides=...)``
or the environment variable ``CEILING_OVERRIDES`` (space-separated), so
``python -m benchmarks.run --only ceiling`` can try one without a code change.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import shlex
import tempfile
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image, ImageEnhance
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

from benchmarks.timing import mixed_precision, sync
from mbv3_lightning.cli.config import CONFIG_NAME, compose_config
from mbv3_lightning.data.workers import default_num_workers
from mbv3_lightning.models.memory_format import batch_memory_format
from mbv3_lightning.models.registry import get_spec
from mbv3_lightning.resources import resource_path
from mbv3_lightning.training.optim import make_optimizer, make_scheduler, node_factory
from mbv3_lightning.training.run import run as train_run

GOAL = 0.90
GOAL_MODEL = "mobilenet_v3_large"
JPEG_QUALITY = 95
WARMUP_STEPS = 2  # skipped steps of a one-epoch run
CEILING_WARMUP = 10
SOURCE = "data/fruits360-mini"
OVERRIDES_ENV = "CEILING_OVERRIDES"


@dataclass(frozen=True)
class Sizes:
    """What one run of the benchmark measures."""

    models: tuple[str, ...]
    input_size: int
    batch: int
    train_images: int
    val_images: int
    epochs: int
    ceiling_steps: int


def sizes(device: str, quick: bool) -> Sizes:
    """The GPU session's sizes on CUDA (17,000 training images, 3 epochs; fewer with ``quick``); on
    the CPU small enough for a test (quick) or a few minutes."""
    if device.startswith("cuda"):
        if quick:
            return Sizes((GOAL_MODEL, "mobilenet_v3_small"), 224, 256, 8_192, 500, 2, 30)
        return Sizes((GOAL_MODEL, "mobilenet_v3_small"), 224, 256, 17_000, 1_000, 3, 60)
    if quick:
        # 10 steps of 16: one epoch, 8 timed steps; 2 validation images per class
        return Sizes(("mobilenet_v3_small",), 64, 16, 160, 20, 1, 8)
    return Sizes((GOAL_MODEL, "mobilenet_v3_small"), 64, 16, 320, 20, 2, 10)


# --- the folder of JPEGs ---------------------------------------------------------------------


def source_photos() -> dict[str, list[Path]]:
    """``{class: photos}`` of the bundled Fruits-360 sample (train and test), sorted."""
    root = resource_path(SOURCE)
    photos: dict[str, list[Path]] = {}
    for split in ("train", "test"):
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            photos.setdefault(class_dir.name, []).extend(sorted(class_dir.glob("*.jpg")))
    if not photos:
        raise FileNotFoundError(f"No class folders with .jpg photos under '{root}'.")
    return photos


def _vary_and_save(jobs: list[tuple[str, str, int]]) -> int:
    """Write each ``(source, destination, seed)`` as a seeded variation of the source photo."""
    for source, destination, seed in jobs:
        rng = random.Random(seed)
        with Image.open(source) as photo:
            image = photo.convert("RGB")
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        # a small rotation and shift on Fruits-360's white background
        shift = (rng.randint(-6, 6), rng.randint(-6, 6))
        image = image.rotate(
            rng.uniform(-15, 15),
            resample=Image.Resampling.BILINEAR,
            translate=shift,
            fillcolor=(255, 255, 255),
        )
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
        image = ImageEnhance.Color(image).enhance(rng.uniform(0.8, 1.2))
        image.save(destination, format="JPEG", quality=JPEG_QUALITY)
    return len(jobs)


def make_jpeg_folder(
    root: Path, counts: dict[str, int], workers: int | None = None
) -> dict[str, Any]:
    """``root/<split>/<class>/<i>.jpg``: ``counts[split]`` real JPEGs per split, classes in turn.

    Image ``i`` of a split is a seeded variation of a photo of class ``i mod classes``, so every
    class gets its share and a rerun writes the same files. Encoding runs in a process pool
    (one process per core, at most ``workers``). Returns what was written.
    """
    photos = source_photos()
    classes = sorted(photos)
    jobs: list[tuple[str, str, int]] = []
    for split, count in counts.items():
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = classes[i % len(classes)]
            pool = photos[name]
            source = pool[(i // len(classes)) % len(pool)]
            destination = root / split / name / f"{i:06d}.jpg"
            jobs.append((str(source), str(destination), zlib.crc32(f"{split}/{i}".encode())))
    workers = max(1, min(workers or os.cpu_count() or 1, os.cpu_count() or 1))
    started = time.perf_counter()
    chunk = max(1, -(-len(jobs) // (workers * 4)))
    chunks = [jobs[i : i + chunk] for i in range(0, len(jobs), chunk)]
    if workers == 1:
        written = sum(_vary_and_save(c) for c in chunks)
    else:
        # fork: the children only run PIL, and start at once instead of re-importing torch
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool_:
            written = sum(pool_.map(_vary_and_save, chunks))
    return {
        "root": str(root),
        "classes": len(classes),
        **{f"{split}_images": count for split, count in counts.items()},
        "written": written,
        "jpeg_quality": JPEG_QUALITY,
        "workers": workers,
        "seconds": round(time.perf_counter() - started, 1),
    }


# --- what all variants share ----------------------------------------------------------------


def project_overrides(
    folder: Path, arch: str, size: Sizes, device: str, extra: Sequence[str] = ()
) -> list[str]:
    """The project's command line for the folder benchmark (``extra`` last, so it wins)."""
    return [
        "dataset=image_folder",
        f"dataset.root={folder}",
        f"model={arch}",
        f"dataset.batch_size={size.batch}",
        f"dataset.input_size={size.input_size}",
        f"trainer={'gpu' if device.startswith('cuda') else 'cpu'}",
        f"trainer.max_epochs={size.epochs}",
        "++trainer.num_sanity_val_steps=0",  # sanity batches are no training
        "test=false",
        "logger=csv",
        "callbacks.progress_bar=null",
        "seed=0",
        *extra,
    ]


def memory_format(cfg: DictConfig, device: str) -> torch.memory_format:
    """The layout the project trains in on ``device`` under the config's ``channels_last``."""
    return batch_memory_format(cfg.get("channels_last", "auto"), device)


class _Step:
    """The training step of the bare and ceiling variants, built from the project's config."""

    def __init__(self, cfg: DictConfig, num_classes: int, device: str, total_steps: int) -> None:
        torch.manual_seed(0)
        self.device = device
        self.format = memory_format(cfg, device)
        self.precision = str(cfg.trainer.precision) if device != "cpu" else None
        mixed_precision(device, self.precision)  # an unsupported precision fails here, early
        self.smoothing = float(cfg.model.get("label_smoothing") or 0.0)
        net = instantiate(cfg.model.net, num_classes=num_classes)
        self.net = net.to(device, memory_format=self.format).train()
        # on the device first: make_optimizer picks the fused kernel for the device's tensors
        self.opt = make_optimizer(node_factory(cfg.optimizer), self.net.parameters())
        self.schedule = make_scheduler(
            node_factory(cfg.scheduler),
            self.opt,
            total_steps=total_steps,
            steps_per_epoch=total_steps,
        )

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.format)
        labels = labels.to(self.device, non_blocking=True)
        with mixed_precision(self.device, self.precision):
            loss = F.cross_entropy(self.net(images), labels, label_smoothing=self.smoothing)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.schedule.step()


def _timed(epoch: int, batch_idx: int, epochs: int) -> bool:
    """Whether a step is steady state: not in the first epoch, or past the warm-up steps."""
    return epoch >= 1 if epochs > 1 else batch_idx >= WARMUP_STEPS


class _EpochClock:
    """Seconds and images of the timed steps, one segment per epoch (see the module doc)."""

    def __init__(self, device: str, epochs: int) -> None:
        self.device, self.epochs = device, epochs
        self.seconds, self.images, self.steps = 0.0, 0, 0
        self.images_per_epoch: list[int] = []
        self._start: float | None = None

    def step_start(self, epoch: int, batch_idx: int) -> None:
        if batch_idx == 0:
            self.images_per_epoch.append(0)
        if self._start is None and _timed(epoch, batch_idx, self.epochs):
            sync(self.device)
            self._start = time.perf_counter()

    def step_end(self, images: int, last: bool) -> None:
        self.images_per_epoch[-1] += images
        if self._start is not None:
            self.images += images
            self.steps += 1
            if last:
                sync(self.device)
                self.seconds += time.perf_counter() - self._start
                self._start = None

    def result(self) -> dict[str, Any]:
        return {
            "timed_seconds": self.seconds,
            "timed_images": self.images,
            "timed_steps": self.steps,
            "images_per_epoch": self.images_per_epoch,
        }


# --- the three variants ---------------------------------------------------------------------


def ceiling_img_s(cfg: DictConfig, num_classes: int, size: Sizes, device: str) -> float:
    """Images/s of the step alone, on random tensors already on the device."""
    step = _Step(cfg, num_classes, device, CEILING_WARMUP + size.ceiling_steps)
    generator = torch.Generator().manual_seed(0)
    shape = (size.batch, 3, size.input_size, size.input_size)
    images = torch.randn(shape, generator=generator).to(device, memory_format=step.format)
    labels = torch.randint(0, num_classes, (size.batch,), generator=generator).to(device)
    for _ in range(CEILING_WARMUP):
        step(images, labels)
    sync(device)
    start = time.perf_counter()
    for _ in range(size.ceiling_steps):
        step(images, labels)
    sync(device)
    return size.batch * size.ceiling_steps / (time.perf_counter() - start)


def bare_transform(cfg: DictConfig, arch: str, input_size: int) -> v2.Compose:
    """torchvision v2 on the CPU: the project's crop area range and flip, then normalise."""
    spec = get_spec(arch)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(input_size, scale=tuple(cfg.dataset.scale), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(spec.mean), list(spec.std)),
        ]
    )


def bare_loop(cfg: DictConfig, folder: Path, arch: str, size: Sizes, device: str) -> dict[str, Any]:
    """Images/s of the bare ImageFolder + DataLoader loop over ``folder/train``."""
    train_set = datasets.ImageFolder(folder / "train", bare_transform(cfg, arch, size.input_size))
    workers = max(0, (os.cpu_count() or 1) - 1)
    loader = DataLoader(
        train_set,
        batch_size=size.batch,
        shuffle=True,
        drop_last=True,  # every step the same shape, as in the project
        num_workers=workers,
        pin_memory=device.startswith("cuda"),
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    step = _Step(cfg, len(train_set.classes), device, size.epochs * len(loader))
    clock = _EpochClock(device, size.epochs)
    for epoch in range(size.epochs):
        for batch_idx, (images, labels) in enumerate(loader):
            clock.step_start(epoch, batch_idx)
            step(images, labels)
            clock.step_end(len(labels), last=batch_idx == len(loader) - 1)
    return {**clock.result(), "workers": workers}


class ThroughputClock(L.Callback):
    """Times the project's steady-state training steps and writes them to ``path`` (JSON).

    Steps are timed as in the bare loop (:class:`_EpochClock`): validation, checkpoints and
    start-up fall outside. Added to a run through the config:
    ``+callbacks.clock._target_=benchmarks.ceiling.ThroughputClock +callbacks.clock.path=F``.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._clock: _EpochClock | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._clock = _EpochClock(str(pl_module.device), trainer.max_epochs)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._clock.step_start(trainer.current_epoch, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        last = batch_idx == trainer.num_training_batches - 1
        self._clock.step_end(int(batch[0].shape[0]), last=last)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.write_text(json.dumps(self._clock.result()))


def project_run(cfg: DictConfig, clock_file: Path) -> dict[str, Any]:
    """The project's real training run; what its clock measured and the run's record."""
    record = train_run(cfg)
    measured = json.loads(clock_file.read_text())
    return {**measured, "train_time_s": record.timings.train_time_s}


def measure(
    folder: Path, arch: str, size: Sizes, device: str, work: Path, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """One table row: the three variants of ``arch`` on ``folder``."""
    clock_file = work / f"{arch}-clock.json"
    overrides = [
        *project_overrides(folder, arch, size, device, extra),
        "+callbacks.clock._target_=benchmarks.ceiling.ThroughputClock",
        f"+callbacks.clock.path={clock_file}",
    ]
    cfg = compose_config(CONFIG_NAME, overrides, hydra_runtime=True, output_dir=work / arch)
    num_classes = len(source_photos())
    cuda = device.startswith("cuda")
    benchmark = torch.backends.cudnn.benchmark
    # The ceiling and the bare loop may pick the fastest cuDNN kernels for their fixed shapes;
    # the project runs with whatever its own GPU defaults choose.
    torch.backends.cudnn.benchmark = cuda or benchmark
    try:
        ceiling = ceiling_img_s(cfg, num_classes, size, device)
        _release(device)
        bare = bare_loop(cfg, folder, arch, size, device)
        _release(device)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    project = project_run(cfg, clock_file)
    _release(device)
    bare_img_s = bare["timed_images"] / bare["timed_seconds"]
    project_img_s = project["timed_images"] / project["timed_seconds"]
    row = {
        "model": arch,
        "input_size": size.input_size,
        "batch": size.batch,
        "precision": str(cfg.trainer.precision),
        "memory_format": (
            "channels_last" if memory_format(cfg, device) is torch.channels_last else "nchw"
        ),
        "ceiling_img_s": round(ceiling, 1),
        "bare_img_s": round(bare_img_s, 1),
        "project_img_s": round(project_img_s, 1),
        "project/ceiling": round(project_img_s / ceiling, 3),
        "project/bare": round(project_img_s / bare_img_s, 3),
        "bare/ceiling": round(bare_img_s / ceiling, 3),
        "bare_workers": bare["workers"],
        "project_workers": _project_workers(cfg),
        "timed_steps": f"ceiling {size.ceiling_steps}, bare {bare['timed_steps']}, "
        f"project {project['timed_steps']}",
        "project_images_per_epoch": project["images_per_epoch"],
        "project_train_time_s": round(project["train_time_s"], 1),
    }
    if not cuda:
        row["verdict"] = "not judged: the goal is a GPU goal"
    elif arch == GOAL_MODEL:
        met = row["project/ceiling"] >= GOAL
        row["verdict"] = f"{'met' if met else 'missed'}: project/ceiling >= {GOAL}"
    else:
        row["verdict"] = "reported"
    return row


def _project_workers(cfg: DictConfig) -> int:
    workers = cfg.dataset.get("num_workers")
    return default_num_workers() if workers is None else int(workers)


def _release(device: str) -> None:
    """Free the previous variant's cached GPU memory before the next one starts."""
    if device.startswith("cuda"):
        sync(device)
        torch.cuda.empty_cache()


def run(device: str, quick: bool, overrides: Sequence[str] | None = None) -> dict:
    for name in ("lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    extra = list(
        overrides if overrides is not None else shlex.split(os.environ.get(OVERRIDES_ENV, ""))
    )
    size = sizes(device, quick)
    with tempfile.TemporaryDirectory(prefix="ceiling-") as tmp:
        work = Path(tmp)
        folder = work / "jpegs"
        written = make_jpeg_folder(
            folder, {"train": size.train_images, "val": size.val_images}, workers=16
        )
        rows = [measure(folder, arch, size, device, work, extra) for arch in size.models]
    key = next((r for r in rows if r["model"] == GOAL_MODEL), None)
    ratio = key["project/ceiling"] if key else min(r["project/ceiling"] for r in rows)
    # A GPU goal: on the CPU the input pipeline is not what holds training back.
    met = ratio >= GOAL if device.startswith("cuda") and key else None
    written.pop("root")
    return {
        "title": "GPU ceiling: project vs bare ImageFolder loop vs random tensors on the device"
        f" (training images/s, {size.input_size} px, batch {size.batch})",
        "goal": f"{GOAL_MODEL} project / ceiling >= {GOAL} on CUDA at 224 px, batch 256",
        "ratio": ratio,
        "met": met,
        "rows": rows,
        "tables": [{"title": "The generated folder of JPEGs", "rows": [written]}],
        "sizes": asdict(size),
        "project_overrides": extra,
    }
