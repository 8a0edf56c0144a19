"""ImageFolderDataModule: a folder of class sub-folders, split into train / val / test.

Layouts (see :mod:`mbv3_lightning.data.layout`): split folders ``root/train*/<class>/*``
plus optionally ``val*/`` and ``test*/`` (any case, nested up to three levels deep), or class
folders directly under ``root``. Missing splits are carved out with a seeded, stratified
split; every image is decode-checked once (cached); the split is written to the run
directory (``split_manifest.json``, ``class_indices.json``) so a run can be audited and
repeated exactly. Nothing is ever written inside the dataset folder.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from mbv3_lightning.data.device_augment import CanvasTransform, DeviceAugment, canvas_side
from mbv3_lightning.data.images import ImageInfo, ImageListDataset, is_image_file
from mbv3_lightning.data.kaggle import download_dataset, missing_dataset_message
from mbv3_lightning.data.layout import Layout, find_layouts
from mbv3_lightning.data.paper_smoke import write_stand_in
from mbv3_lightning.data.ram_cache import InMemoryImageDataset, preload
from mbv3_lightning.data.resumable_loader import ResumableLoader
from mbv3_lightning.data.scan_cache import default_cache_dir, inspect_images
from mbv3_lightning.data.split_manifest import read_manifest, reuse_split
from mbv3_lightning.data.transforms import (
    EVAL_CROP_RATIO,
    EvalTransform,
    SquareResize,
    TrainTransform,
    eval_transform,
)
from mbv3_lightning.models.registry import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
BAD_IMAGE_POLICIES = ("skip", "error")
BALANCE_MODES = ("none", "weights", "sampler")
# kaggle: the split folders are used as they are named. paper: the MobileNetV3
# image-classification paper's protocol (its section III.A), a seeded val_fraction of the
# training folder is validation, and a validation folder is the test set (10 Monkey Species'
# validation/ is its test set there, III.D.2).
PROTOCOLS = ("kaggle", "paper")
# augment: RandomResizedCrop + flip for training, resize + centre crop for evaluation.
# paper: every image resized to the square input size and normalised, nothing else (III.A).
PREPROCESSING = ("augment", "paper")
# Where training augmentation runs: in the loader workers (cpu), on the training device after
# the transfer (device: uint8 batches, see data/device_augment.py), or on the device when
# training runs on a GPU (auto).
AUGMENT_ON = ("auto", "cpu", "device")
Samples = list[tuple[Path, int]]
ClassFiles = dict[str, list[Path]]
# Past this many, a bad-image error lists the first ones and the count (the log has them all).
_MAX_LISTED = 20


# Workers per training process at most: past this, a many-core node only adds start-up time
# and batches in flight (each worker prefetches two) for a loader that already keeps one GPU
# fed (an assumption: not measured on such a node).
MAX_WORKERS = 32


def default_num_workers(processes: int = 1) -> int:
    """Loader worker processes for ``num_workers: null``, per training process.

    With two cores or fewer, training already keeps both busy and a worker only competes with
    it: the demo trained faster with 0 workers than with 1 on a 2-core machine (RAM cache on).
    With more cores, every core but one per training process (``processes``: the devices of
    this node), up to ``MAX_WORKERS``: a cap of 8 left half of a 16-core GPU machine idle
    while the input pipeline held training back.
    """
    cores = os.cpu_count() or 1
    if cores <= 2:
        return 0
    return min(MAX_WORKERS, max(1, cores // max(1, processes) - 1))


def scan_class_folders(split_dir: Path) -> dict[str, list[Path]]:
    """``{class folder name: sorted image paths}`` for one split folder.

    A class "folder" that is a link back to the split folder or above it (a symlink loop) is
    skipped with a warning: scanned, it would hold every other class's images under its name.
    """
    classes: dict[str, list[Path]] = {}
    here = split_dir.resolve()
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        target = class_dir.resolve()
        if target == here or target in here.parents:
            log.warning(
                "Skipping '%s': it links back to '%s', so it is not a class folder.",
                class_dir,
                target,
            )
            continue
        classes[class_dir.name] = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and is_image_file(p)
        )
    return classes


def stratified_split(
    files_per_class: dict[str, list[Path]], fraction: float, seed: int
) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """Move a seeded ``fraction`` of every class out (at least one image when a class has two).

    Each class is shuffled with its own generator seeded by ``(seed, class name)``, so adding
    or removing a class does not change the split of the others.
    """
    kept: dict[str, list[Path]] = {}
    moved: dict[str, list[Path]] = {}
    for name, files in files_per_class.items():
        order = sorted(files)
        random.Random(f"{seed}:{name}").shuffle(order)
        n_moved = round(len(order) * fraction)
        if len(order) >= 2:
            n_moved = min(max(n_moved, 1), len(order) - 1)
        moved[name] = sorted(order[:n_moved])
        kept[name] = sorted(order[n_moved:])
    return kept, moved


class ImageFolderDataModule(L.LightningDataModule):
    """Train/val/test loaders for a folder of class folders with seeded stratified splits.

    Dataset subclasses set ``expected_layout`` (shown in errors) and may override
    :meth:`choose_layout` and :meth:`display_names`; nothing else.
    """

    expected_layout = (
        "'<root>/train/<class>/*.jpg' (optionally val/ and test/), or class folders directly "
        "under the root ('<root>/<class>/*.jpg')"
    )

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        name: str = "image_folder",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        val_fraction: float = 0.3,
        test_fraction: float = 0.15,
        seed: int = 42,
        input_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scale: Sequence[float] = (0.08, 1.0),
        hflip: bool = True,
        brightness: float = 0.0,
        classes: Sequence[str] | None = None,
        kaggle_handle: str | None = None,
        download: bool = False,
        stand_in: bool = False,
        bad_images: str = "skip",
        cache: bool | str = "auto",
        cache_budget_mb: float = 2048,
        balance: str = "none",
        protocol: str = "kaggle",
        preprocess: str = "augment",
        augment_on: str = "auto",
        output_dir: str | os.PathLike[str] | None = None,
        split_manifest: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"dataset.batch_size must be a positive integer, got {batch_size!r}.")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"dataset.val_fraction must be in (0, 1), got {val_fraction}.")
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"dataset.test_fraction must be in [0, 1), got {test_fraction}.")
        for key, value, choices in (
            ("bad_images", bad_images, BAD_IMAGE_POLICIES),
            ("balance", balance, BALANCE_MODES),
            ("protocol", protocol, PROTOCOLS),
            ("preprocess", preprocess, PREPROCESSING),
            ("augment_on", augment_on, AUGMENT_ON),
        ):
            if value not in choices:
                raise ValueError(f"dataset.{key} must be one of {list(choices)}, got {value!r}.")
        self.root = Path(root).expanduser()
        self.name = name
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        # None: chosen from the cores when the loaders are made (see `workers`)
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.input_size = input_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = {"scale": tuple(scale), "hflip": hflip, "brightness": brightness}
        self.classes = list(classes) if classes else None
        self.kaggle_handle = kaggle_handle
        self.download = download
        # Write generated stand-ins of the paper's datasets where root is missing (smoke study).
        self.stand_in = stand_in
        self.bad_images = bad_images
        if cache not in (True, False, "auto"):
            raise ValueError(f"dataset.cache must be true, false or auto, got {cache!r}.")
        self.cache = cache
        self.cache_budget_mb = cache_budget_mb
        self.balance = balance
        self.protocol = protocol
        self.preprocess = preprocess
        self.augment_on = augment_on
        # Set by setup() when training batches are augmented on the device (uint8 canvases).
        self.device_augment: DeviceAugment | None = None
        self.output_dir = Path(output_dir) if output_dir is not None else None
        # A resumed run's saved split (split_manifest.json): reused, never drawn again.
        self.split_manifest = Path(split_manifest) if split_manifest is not None else None
        # The training loader, and where a resumed run's loader continues (state_dict).
        self._train_loader: ResumableLoader | None = None
        self._train_position: dict[str, Any] | None = None
        self.layout: Layout | None = None
        self.skipped_images: dict[Path, str] = {}
        # (width, height) of every readable image, from the decode check
        self.image_sizes: dict[Path, tuple[int, int]] = {}
        self._splits: dict[str, ClassFiles] | None = None
        self.datasets: dict[str, Dataset] = {}

    # ----------------------------------------------------------------- hooks for subclasses
    def choose_layout(self, layouts: list[Layout]) -> Layout:
        """Pick one of several layouts found side by side (subclasses know their versions)."""
        if len(layouts) > 1:
            found = [str(layout.root) for layout in layouts]
            raise ValueError(
                f"Found {len(layouts)} copies of the split folders under '{self.root}': {found}. "
                "Point `dataset.root=` at the one to use."
            )
        return layouts[0]

    def display_names(self, keys: list[str]) -> list[str]:
        """Human-readable names for the class folder ids (identity unless a dataset maps them)."""
        return list(keys)

    # ----------------------------------------------------------------- layout
    def locate(self) -> Layout:
        """Find (or download, with ``download=true``) the dataset and detect its layout."""
        if not self.root.is_dir() and self.stand_in:
            write_stand_in(self.name, self.root)
        if not self.root.is_dir():
            if not self.download:
                raise FileNotFoundError(
                    missing_dataset_message(
                        self.name, self.root, self.kaggle_handle, self.expected_layout
                    )
                )
            self.root = download_dataset(
                self.kaggle_handle, self.root, name=self.name, layout=self.expected_layout
            )
        layout = self.choose_layout(find_layouts(self.root))
        where = ", ".join(f"{s}={p.relative_to(self.root)}" for s, p in layout.splits.items())
        log.info("Dataset '%s' in '%s': %s.", self.name, self.root, where or "class folders")
        return layout

    def _scan(self) -> dict[str, ClassFiles]:
        self.layout = self.locate()
        if self.layout.flat:
            splits = {"train": scan_class_folders(self.layout.root)}
        else:
            splits = {split: scan_class_folders(d) for split, d in self.layout.splits.items()}
            splits = self._apply_protocol(splits)
        if self.classes is not None:
            splits = self._select_classes(splits)
        splits = self._drop_bad_images(splits)
        self._check_classes(splits)
        if self.layout.flat and self.test_fraction > 0:
            splits["train"], splits["test"] = stratified_split(
                splits["train"], self.test_fraction, self.seed
            )
        if "val" not in splits:
            # The split moves at least one image of a class with two; with one there is
            # nothing to validate on, which would show up only as a val/acc of 0.
            too_few = sorted(name for name, files in splits["train"].items() if len(files) < 2)
            if too_few:
                raise ValueError(
                    f"Classes {too_few} have fewer than 2 images in '{self._where('train')}': "
                    "one is needed for training and one for validation "
                    "(dataset.val_fraction). Add images, add a `val/` folder, or leave those "
                    "classes out with `dataset.classes=[...]`."
                )
            splits["train"], splits["val"] = stratified_split(
                splits["train"], self.val_fraction, self.seed
            )
        if self.split_manifest is not None:
            manifest = read_manifest(self.split_manifest)
            splits, added = reuse_split(manifest, self.split_manifest, self.root, splits)
            if added:
                log.warning(
                    "%d image(s) in '%s' are new since this run started (e.g. '%s'); the "
                    "resumed run keeps its saved split (%s) and does not use them.",
                    len(added),
                    self.root,
                    added[0],
                    self.split_manifest,
                )
        return {split: splits[split] for split in SPLITS if split in splits}

    def _apply_protocol(self, splits: dict[str, ClassFiles]) -> dict[str, ClassFiles]:
        """``protocol=paper``: the validation folder becomes the test split (validation is
        then carved from the training folder); ``kaggle`` keeps the folders' own roles."""
        if self.protocol != "paper" or "val" not in splits:
            return splits
        if "test" in splits:
            assert self.layout is not None
            log.warning(
                "dataset.protocol=paper: '%s' has a test folder, so its validation folder '%s' "
                "is not used; validation is a seeded %.0f%% of the training folder.",
                self.root,
                self.layout.splits["val"],
                100 * self.val_fraction,
            )
            return {"train": splits["train"], "test": splits["test"]}
        return {"train": splits["train"], "test": splits["val"]}

    def _where(self, split: str) -> Path:
        assert self.layout is not None
        if self.protocol == "paper" and split == "test" and "test" not in self.layout.splits:
            return self.layout.splits.get("val", self.layout.root)
        if self.protocol == "paper" and split == "val":
            return self.layout.splits.get("train", self.layout.root)
        return self.layout.splits.get(split, self.layout.root)

    def _select_classes(self, splits: dict[str, ClassFiles]) -> dict[str, ClassFiles]:
        """Keep only ``dataset.classes``, in the order given there."""
        assert self.classes is not None
        unknown = sorted(set(self.classes) - set(splits["train"]))
        if unknown:
            raise ValueError(
                f"dataset.classes names {unknown}, which are not class folders of "
                f"'{self._where('train')}'. Available: {sorted(splits['train'])}."
            )
        return {
            split: {name: files[name] for name in self.classes if name in files}
            for split, files in splits.items()
        }

    def _drop_bad_images(self, splits: dict[str, ClassFiles]) -> dict[str, ClassFiles]:
        """Decode-check every file; skip the unreadable ones or stop, as ``bad_images`` says."""
        paths = [path for files in splits.values() for names in files.values() for path in names]
        infos: dict[Path, ImageInfo] = inspect_images(paths, default_cache_dir())
        bad = {path: info.error or "" for path, info in infos.items() if not info.ok}
        if bad and self.bad_images == "error":
            first = list(bad.items())[:_MAX_LISTED]
            listed = "\n".join(f"  {path}: {error}" for path, error in first)
            more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
            raise ValueError(
                f"{len(bad)} unreadable image(s) in '{self.root}':\n{listed}{more}\n"
                "Delete or replace them, or set `dataset.bad_images=skip` to train without them."
            )
        for path, error in bad.items():
            log.warning("Skipping unreadable image '%s' (%s).", path, error)
        self.skipped_images = bad
        self.image_sizes = {path: (info.width, info.height) for path, info in infos.items()}
        return {
            split: {name: [p for p in names if p not in bad] for name, names in files.items()}
            for split, files in splits.items()
        }

    def _check_classes(self, splits: dict[str, ClassFiles]) -> None:
        """Every class needs train and val images; the test split may lack some (a warning)."""
        train = splits["train"]
        if len(train) < 2:
            raise ValueError(
                f"'{self._where('train')}' has {len(train)} class folder(s) {list(train)}; need "
                f"at least 2. Expected layout: {self.expected_layout}."
            )
        for split, files in splits.items():
            empty = [name for name, names in files.items() if not names]
            unknown = sorted(set(files) - set(train))
            missing = sorted(set(train) - set(files))
            if unknown:
                raise ValueError(
                    f"Classes in '{self._where(split)}' that are not in '{self._where('train')}': "
                    f"{unknown}. Every class needs training images; remove or rename those "
                    "folders, or pick classes with `dataset.classes=[...]`."
                )
            problem = f"without images in '{self._where(split)}'"
            if split == "test":
                if empty or missing:
                    log.warning("Classes %s: %s.", problem, sorted(empty + missing))
            elif empty or missing:
                raise ValueError(
                    f"Classes {problem}: {sorted(empty + missing)}. Add images, remove the "
                    "class from every split, or pick classes with `dataset.classes=[...]`."
                )

    @property
    def splits(self) -> dict[str, ClassFiles]:
        """``{split: {class folder: [paths]}}``; scanned once, on first use."""
        if self._splits is None:
            self._splits = self._scan()
        return self._splits

    @property
    def class_keys(self) -> list[str]:
        """Class folder names in label order (the stable identifiers)."""
        return list(self.splits["train"])

    @property
    def class_names(self) -> list[str]:
        """Human-readable class names in label order, used in every report and prediction."""
        return self.display_names(self.class_keys)

    @property
    def num_classes(self) -> int:
        return len(self.class_keys)

    def samples(self, split: str) -> Samples:
        index = {name: i for i, name in enumerate(self.class_keys)}
        files = self.splits.get(split, {})
        return [(path, index[name]) for name in self.class_keys for path in files.get(name, [])]

    def class_counts(self, split: str = "train") -> list[int]:
        """Images per class (label order) in ``split``."""
        files = self.splits.get(split, {})
        return [len(files.get(name, [])) for name in self.class_keys]

    @property
    def class_weights(self) -> list[float] | None:
        """Inverse-frequency loss weights (mean 1 over classes) when ``balance=weights``."""
        if self.balance != "weights":
            return None
        counts = self.class_counts("train")
        total = sum(counts)
        return [total / (len(counts) * count) for count in counts]

    # ----------------------------------------------------------------- manifest
    def manifest(self) -> dict[str, object]:
        """The exact file lists of every split, relative to ``root``, and what was skipped."""
        splits = self.splits  # scans (and so detects the layout) on first use
        assert self.layout is not None
        folders = self.layout.splits or {"all": self.layout.root}
        layout = {split: str(path.relative_to(self.root)) for split, path in folders.items()}
        return {
            "root": str(self.root.resolve()),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction if self.layout.flat else None,
            "layout": layout,
            # which folder each split was taken from, under dataset.protocol
            "protocol": self.protocol,
            "split_sources": {
                split: str(self._where(split).relative_to(self.root)) for split in splits
            },
            "preprocess": self.preprocess,
            "classes": self.class_keys,
            "splits": {
                split: [
                    [str(path.relative_to(self.root)), label] for path, label in self.samples(split)
                ]
                for split in splits
            },
            "skipped_images": {
                str(path.relative_to(self.root)): error
                for path, error in self.skipped_images.items()
            },
        }

    def write_manifest(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "split_manifest.json").write_text(json.dumps(self.manifest(), indent=1))
        class_indices = {key: i for i, key in enumerate(self.class_keys)}
        # The index -> name map first, in the car-colour recipe's shape ({"0": "black", ...}),
        # so its scripts and `predict classes=` read this file as they read the recipe's.
        index_to_name = {str(i): name for i, name in enumerate(self.class_names)}
        (directory / "class_indices.json").write_text(
            json.dumps(
                {**index_to_name, "class_to_idx": class_indices, "names": self.class_names},
                indent=1,
            )
        )

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        eval_tf = eval_transform(self.preprocess, self.input_size, self.mean, self.std)
        train_tf: TrainTransform | CanvasTransform | SquareResize | EvalTransform
        if self.preprocess == "paper":
            train_tf = eval_tf  # no augmentation: the paper's resize for every split
        else:
            train_tf = TrainTransform(self.input_size, self.mean, self.std, **self.augment)
        present = [split for split in SPLITS if split in self.splits]
        sides = {split: self.cache_short_side(split) for split in present}
        if self._augments_on_device():
            side = canvas_side(
                sides["train"], [self.image_sizes[path] for path, _ in self.samples("train")]
            )
            train_tf = CanvasTransform(train_tf, sides["train"], side)
            self.device_augment = DeviceAugment(self.input_size, self.mean, self.std)
            log.info(
                "Training augmentation on the device: uint8 batches of %dx%d canvases, "
                "crop, flip and normalisation after the transfer.",
                side,
                side,
            )
        images: dict[Path, torch.Tensor] | None = None
        if self._use_ram_cache(sides):
            images = {}
            for split in present:
                images.update(preload([path for path, _ in self.samples(split)], sides[split]))
        for split in present:
            tf = train_tf if split == "train" else eval_tf
            if images is not None:
                self.datasets[split] = InMemoryImageDataset(self.samples(split), images, tf)
            else:
                self.datasets[split] = ImageListDataset(self.samples(split), tf)
        if self.output_dir is not None:
            self.write_manifest(self.output_dir)
        sizes = ", ".join(f"{split} {len(ds)}" for split, ds in self.datasets.items())
        log.info("Dataset '%s': %d classes; %s images.", self.name, self.num_classes, sizes)

    def _augments_on_device(self) -> bool:
        """``augment_on``: ``auto`` is the device when the attached trainer runs on a GPU.

        Only ``preprocess=augment`` has augmentation to move; evaluation batches are always
        prepared in the workers (the test report, the speed measurement and the W&B
        predictions read them as they are).
        """
        if self.preprocess != "augment":
            if self.augment_on == "device":
                log.warning(
                    "dataset.augment_on=device has no effect with dataset.preprocess=%s: there "
                    "is no training augmentation to move; images are prepared in the workers.",
                    self.preprocess,
                )
            return False
        if self.augment_on == "cpu":
            return False
        if self.augment_on == "device":
            return True
        trainer = self.trainer  # None unless a Trainer uses this DataModule
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches of ``(canvas, box)`` pairs become augmented, normalised images
        here, on the device; every other batch passes unchanged."""
        images, targets = batch
        if self.device_augment is not None and isinstance(images, (list, tuple)):
            images = self.device_augment(*images)
        return images, targets

    def cache_short_side(self, split: str) -> int:
        """The short side a split's images are kept at in the RAM cache (never enlarged).

        Evaluation images at the eval resize, which is all evaluation reads. Training images
        large enough that the smallest random crop (``scale[0]`` of the area) still spans
        ``input_size`` pixels: a crop of a quarter of the area from an image kept at the eval
        resize was a patch half the input size, upsampled, so training saw blurrier images than
        a loader reading the files, and accuracy paid for it on real photos (the accuracy
        benchmark in benchmarks/accuracy.py).
        """
        if self.preprocess == "paper":
            return self.input_size
        eval_side = round(self.input_size / EVAL_CROP_RATIO)
        if split != "train":
            return eval_side
        return max(eval_side, math.ceil(self.input_size / math.sqrt(self.augment["scale"][0])))

    def _use_ram_cache(self, sides: dict[str, int]) -> bool:
        """``cache=auto``: on when the decoded images fit ``cache_budget_mb``.

        Every image counts at the size the decode check recorded, shrunk (never enlarged) to
        its split's :meth:`cache_short_side`; so a folder of small photos trained at a large
        input size is cached as the small photos it holds (a 4:3 image at the full side, the
        assumption before sizes were known, overstated 100-px photos at 224 px elevenfold).
        Off, every epoch decodes the files again: slower, the same pixels. On the 2-core CPU
        here the cache makes the demo's input pipeline keep up with training
        (benchmarks/pipeline.py).
        """
        if self.cache != "auto":
            return bool(self.cache)
        estimate_mb = (
            sum(
                self._cached_bytes(path, side)
                for split, side in sides.items()
                for path, _ in self.samples(split)
            )
            / 2**20
        )
        use = estimate_mb <= self.cache_budget_mb
        log.info(
            "RAM cache %s: %d images need about %.0f MiB (dataset.cache_budget_mb=%g).",
            "on" if use else "off",
            sum(len(self.samples(split)) for split in sides),
            estimate_mb,
            self.cache_budget_mb,
        )
        return use

    def _cached_bytes(self, path: Path, short_side: int) -> int:
        """Bytes the RAM cache holds for ``path`` kept at ``short_side`` (never enlarged); a
        4:3 image at that side if the decode check recorded no size."""
        width, height = self.image_sizes.get(path, (0, 0))
        if not width or not height:
            width, height = round(short_side * 4 / 3), short_side
        factor = min(1.0, short_side / min(width, height))
        return 3 * round(width * factor) * round(height * factor)

    def has_split(self, split: str) -> bool:
        return bool(self.samples(split))

    def _balanced_sampler(self) -> WeightedRandomSampler:
        """Draw every class equally often in expectation (with replacement), seeded."""
        counts = self.class_counts("train")
        weights = [1.0 / counts[label] for _, label in self.samples("train")]
        generator = torch.Generator().manual_seed(self.seed)
        return WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)

    @property
    def workers(self) -> int:
        """``num_workers``, or with ``null`` the core count's share of this training process
        (a Trainer on several devices of this node splits the cores between them)."""
        if self.num_workers is not None:
            return self.num_workers
        trainer = self.trainer
        return default_num_workers(trainer.num_devices if trainer is not None else 1)

    def _trained_batches(self) -> int:
        """Batches of the current, unfinished epoch the attached trainer has trained on (0
        without one, or once the epoch is over: the next one starts afresh)."""
        trainer = self.trainer
        if trainer is None:
            return 0
        trained = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return trained if trained < trainer.num_training_batches else 0

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: how far into its epoch the training loader is."""
        if self._train_loader is None:
            return {}
        return {"train_loader": self._train_loader.position()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restored before the training loader is iterated: it resumes inside its epoch."""
        self._train_position = state_dict.get("train_loader")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        sampler = self._balanced_sampler() if shuffle and self.balance == "sampler" else None
        workers = self.workers
        # Training continues exactly from a checkpoint written inside an epoch.
        loader_class = partial(ResumableLoader, trained_batches=self._trained_batches)
        loader = (loader_class if shuffle else DataLoader)(
            self.datasets[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=shuffle and len(self.datasets[split]) > self.batch_size,
        )
        if isinstance(loader, ResumableLoader):
            if self._train_position is not None:
                loader.resume_from(self._train_position)
                self._train_position = None
            self._train_loader = loader
        return loader

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
