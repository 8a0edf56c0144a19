"""ImageFolderDataModule: a folder of class sub-folders, split into train / val / test.

The DataModule composes the data concerns, each in a module of its own: where the split
folders are (:mod:`~mbv3_lightning.data.layout`), which images form which split
(:mod:`~mbv3_lightning.data.splits`, :mod:`~mbv3_lightning.data.split_manifest`), unreadable
files (:mod:`~mbv3_lightning.data.bad_images`), the RAM cache
(:mod:`~mbv3_lightning.data.ram_cache`), augmentation on the device
(:mod:`~mbv3_lightning.data.device_augment`), class balance and loader workers. It writes
nothing: a run stores its :meth:`~ImageFolderDataModule.manifest` and
:meth:`~ImageFolderDataModule.class_indices` in its run folder. Nothing is ever written inside
the dataset folder.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from mbv3_lightning.data.bad_images import BAD_IMAGE_POLICIES, drop_bad_images
from mbv3_lightning.data.balance import BALANCE_MODES, balanced_sampler, inverse_frequency_weights
from mbv3_lightning.data.device_augment import (
    AUGMENT_ON,
    CanvasTransform,
    DeviceAugment,
    augments_on_device,
    canvas_side,
)
from mbv3_lightning.data.images import ImageListDataset
from mbv3_lightning.data.kaggle import download_dataset, missing_dataset_message
from mbv3_lightning.data.layout import Layout, find_layouts
from mbv3_lightning.data.paper_smoke import write_stand_in
from mbv3_lightning.data.ram_cache import (
    CACHE_CHOICES,
    InMemoryImageDataset,
    cache_short_side,
    cached_bytes,
    preload,
)
from mbv3_lightning.data.resumable_loader import ResumableLoader
from mbv3_lightning.data.split_manifest import (
    build_manifest,
    class_indices,
    read_manifest,
    reuse_split,
)
from mbv3_lightning.data.splits import (
    PROTOCOLS,
    SPLITS,
    ClassFiles,
    Samples,
    apply_protocol,
    carve_validation,
    check_classes,
    scan_class_folders,
    select_classes,
    split_source,
    stratified_split,
)
from mbv3_lightning.data.transforms import (
    PREPROCESSING,
    EvalTransform,
    SquareResize,
    TrainTransform,
    eval_transform,
)
from mbv3_lightning.data.workers import default_num_workers
from mbv3_lightning.models.registry import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

# What the images that re-estimate BatchNorm statistics go through: the training augmentation
# or the evaluation transform (callbacks.bn_recalibration.transform).
CALIBRATION_TRANSFORMS = ("train", "eval")


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
        eval_batch_size: int | None = 64,
        num_workers: int | None = None,
        val_fraction: float = 0.3,
        test_fraction: float = 0.15,
        seed: int = 42,
        input_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scale: Sequence[float] = (0.6, 1.0),
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
        split_manifest: str | os.PathLike[str] | None = None,
    ) -> None:
        """Every keyword's default is the one ``conf/dataset_base.yaml`` (and, for
        ``test_fraction``, ``conf/dataset/image_folder.yaml``) gives: a test checks they agree.
        ``input_size``, ``mean`` and ``std`` come from the model; ``split_manifest`` is the
        saved split a resumed run reuses instead of drawing one."""
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
            ("cache", cache, CACHE_CHOICES),
        ):
            if not any(value == c and type(value) is type(c) for c in choices):
                raise ValueError(f"dataset.{key} must be one of {list(choices)}, got {value!r}.")
        self.root = Path(root).expanduser()
        self.name: str = name
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        # None: chosen from the cores when the loaders are made (see `workers`)
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.input_size = input_size
        self.mean, self.std = tuple(mean), tuple(std)
        # the training augmentation (preprocess=augment)
        self.scale = (float(scale[0]), float(scale[1]))
        self.hflip = hflip
        self.brightness = brightness
        self.classes = list(classes) if classes else None
        self.kaggle_handle = kaggle_handle
        self.download = download
        # Write generated stand-ins of the paper's datasets where root is missing (smoke study).
        self.stand_in = stand_in
        self.bad_images = bad_images
        self.cache = cache
        self.cache_budget_mb = cache_budget_mb
        self.balance = balance
        self.protocol = protocol
        self.preprocess = preprocess
        self.augment_on = augment_on
        # Set by setup() when training batches are augmented on the device (uint8 canvases).
        self.device_augment: DeviceAugment | None = None
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
        self.datasets: dict[str, ImageListDataset | InMemoryImageDataset] = {}

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
        self.layout = layout = self.locate()
        if layout.flat:
            splits = {"train": scan_class_folders(layout.root)}
        else:
            splits = {split: scan_class_folders(d) for split, d in layout.splits.items()}
            splits = apply_protocol(splits, layout, self.protocol, self.val_fraction)
        if self.classes is not None:
            splits = select_classes(splits, self.classes, self._where("train"))
        splits, self.skipped_images, self.image_sizes = drop_bad_images(
            splits, self.bad_images, self.root
        )
        check_classes(splits, {s: self._where(s) for s in splits}, self.expected_layout)
        if layout.flat and self.test_fraction > 0:
            splits["train"], splits["test"] = stratified_split(
                splits["train"], self.test_fraction, self.seed
            )
        if "val" not in splits:
            splits = carve_validation(splits, self.val_fraction, self.seed, self._where("train"))
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

    def _where(self, split: str) -> Path:
        assert self.layout is not None
        return split_source(self.layout, self.protocol, split)

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

    def image_counts(self) -> dict[str, int]:
        """Images per split (``train``, ``val``, ``test``; 0 for a split the dataset lacks)."""
        return {split: sum(self.class_counts(split)) for split in SPLITS}

    def class_counts(self, split: str = "train") -> list[int]:
        """Images per class (label order) in ``split``."""
        files = self.splits.get(split, {})
        return [len(files.get(name, [])) for name in self.class_keys]

    @property
    def class_weights(self) -> list[float] | None:
        """Inverse-frequency loss weights (mean 1 over classes) when ``balance=weights``."""
        if self.balance != "weights":
            return None
        return inverse_frequency_weights(self.class_counts("train"))

    # ----------------------------------------------------------------- what a run records
    def manifest(self) -> dict[str, Any]:
        """``split_manifest.json``: the exact file lists of every split, relative to ``root``,
        and what was skipped."""
        splits = self.splits  # scans (and so detects the layout) on first use
        assert self.layout is not None
        return build_manifest(
            root=self.root,
            layout=self.layout,
            protocol=self.protocol,
            preprocess=self.preprocess,
            seed=self.seed,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction if self.layout.flat else None,
            class_keys=self.class_keys,
            samples={split: self.samples(split) for split in splits},
            skipped=self.skipped_images,
        )

    def class_indices(self) -> dict[str, Any]:
        """``class_indices.json``: label index -> name, class folder -> index, names."""
        return class_indices(self.class_keys, self.class_names)

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        eval_tf = eval_transform(self.preprocess, self.input_size, self.mean, self.std)
        train_tf: TrainTransform | CanvasTransform | SquareResize | EvalTransform
        if self.preprocess == "paper":
            train_tf = eval_tf  # no augmentation: the paper's resize for every split
        else:
            train_tf = TrainTransform(
                self.input_size,
                self.mean,
                self.std,
                scale=self.scale,
                hflip=self.hflip,
                brightness=self.brightness,
            )
        present = [split for split in SPLITS if split in self.splits]
        sides = {split: self.cache_short_side(split) for split in present}
        trainer = self.trainer  # None unless a Trainer uses this DataModule
        device = trainer.strategy.root_device.type if trainer is not None else None
        if augments_on_device(self.augment_on, self.preprocess, device):
            assert isinstance(train_tf, TrainTransform)  # preprocess=augment, or it is off
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
        sizes = ", ".join(f"{split} {len(ds)}" for split, ds in self.datasets.items())
        log.info("Dataset '%s': %d classes; %s images.", self.name, self.num_classes, sizes)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches of ``(canvas, box)`` pairs become augmented, normalised images
        here, on the device; every other batch passes unchanged."""
        images, targets = batch
        if self.device_augment is not None and isinstance(images, (list, tuple)):
            images = self.device_augment(*images)
        return images, targets

    def calibration_dataset(self, transform: str) -> Dataset:
        """The training images for re-estimating BatchNorm statistics
        (:mod:`~mbv3_lightning.models.batchnorm`): prepared as training batches are
        (``transform="train"``: augmented; on the GPU path the ``(canvas, box)`` pairs
        :meth:`on_after_batch_transfer` finishes) or as evaluation prepares images
        (``"eval"``: resize and centre crop)."""
        if transform not in CALIBRATION_TRANSFORMS:
            raise ValueError(
                f"The BatchNorm recalibration transform must be one of "
                f"{list(CALIBRATION_TRANSFORMS)}, got {transform!r}."
            )
        self.setup("fit")
        train = self.datasets["train"]
        if transform == "train":
            return train
        # The same images (and RAM cache) with the evaluation transform: a shallow copy.
        view = copy.copy(train)
        view.transform = eval_transform(self.preprocess, self.input_size, self.mean, self.std)
        return view

    def cache_short_side(self, split: str) -> int:
        """The short side ``split``'s images are kept at in the RAM cache (never enlarged)."""
        return cache_short_side(split, self.input_size, self.preprocess, self.scale[0])

    def _use_ram_cache(self, sides: dict[str, int]) -> bool:
        """``cache=auto``: on when the decoded images fit ``cache_budget_mb``.

        Every image counts at the size the decode check recorded, shrunk (never enlarged) to
        its split's cache side; so a folder of small photos trained at a large input size is
        cached as the small photos it holds. Off, every epoch decodes the files again: slower,
        the same pixels.
        """
        if self.cache != "auto":
            return bool(self.cache)
        counted = [
            cached_bytes(self.image_sizes.get(path), side)
            for split, side in sides.items()
            for path, _ in self.samples(split)
        ]
        estimate_mb = sum(counted) / 2**20
        use = estimate_mb <= self.cache_budget_mb
        log.info(
            "RAM cache %s: %d images need about %.0f MiB (dataset.cache_budget_mb=%g).",
            "on" if use else "off",
            len(counted),
            estimate_mb,
            self.cache_budget_mb,
        )
        return use

    def has_split(self, split: str) -> bool:
        return bool(self.samples(split))

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
        current = trainer.fit_loop.epoch_loop.batch_progress.current
        trained = current.processed  # type: ignore[attr-defined]  # a _ProcessedTracker
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
        sampler = None
        if shuffle and self.balance == "sampler":
            labels = [label for _, label in self.samples(split)]
            sampler = balanced_sampler(labels, self.class_counts(split), self.seed)
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
