"""ImageFolderDataModule: a folder of class sub-folders, split into train / val / test.

Layout: ``root/train/<class>/*`` plus optionally ``root/val/<class>/*`` and ``root/test/<class>/*``.
Without a ``val/`` folder a stratified, seeded ``val_fraction`` of ``train/`` becomes the
validation set; the split is written to the run directory (``split_manifest.json``,
``class_indices.json``) so a run can be audited and repeated exactly.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from mbv3_lightning.data.images import ImageListDataset, is_image_file
from mbv3_lightning.data.transforms import eval_transform, train_transform
from mbv3_lightning.models.registry import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
Samples = list[tuple[Path, int]]


def default_num_workers() -> int:
    """Leave one core to the training process; on 2 cores one loader worker keeps up."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


def scan_class_folders(split_dir: Path) -> dict[str, list[Path]]:
    """``{class folder name: sorted image paths}`` for one split folder."""
    classes: dict[str, list[Path]] = {}
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
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
    """Train/val/test loaders for a folder of class folders with seeded stratified splits."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        name: str = "image_folder",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        val_fraction: float = 0.3,
        seed: int = 42,
        input_size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        scale: Sequence[float] = (0.08, 1.0),
        hflip: bool = True,
        brightness: float = 0.0,
        output_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"dataset.batch_size must be a positive integer, got {batch_size!r}.")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"dataset.val_fraction must be in (0, 1), got {val_fraction}.")
        self.root = Path(root).expanduser()
        self.name = name
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.input_size = input_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.augment = {"scale": tuple(scale), "hflip": hflip, "brightness": brightness}
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self._splits: dict[str, dict[str, list[Path]]] | None = None
        self.datasets: dict[str, ImageListDataset] = {}

    # ----------------------------------------------------------------- layout
    def split_dirs(self) -> dict[str, Path]:
        """The split folders present under ``root`` (subclasses detect other layouts)."""
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"Dataset folder '{self.root}' does not exist. Expected "
                f"'{self.root}/train/<class>/*.jpg' (optionally val/ and test/). Point to your "
                "copy with `dataset.root=/path/to/data`."
            )
        found = {split: self.root / split for split in SPLITS if (self.root / split).is_dir()}
        if "train" not in found:
            raise FileNotFoundError(
                f"No 'train/' folder in '{self.root}'. Expected '{self.root}/train/<class>/*.jpg' "
                "(optionally val/ and test/)."
            )
        return found

    def _scan(self) -> dict[str, dict[str, list[Path]]]:
        dirs = self.split_dirs()
        splits = {split: scan_class_folders(path) for split, path in dirs.items()}
        train_classes = list(splits["train"])
        if len(train_classes) < 2:
            raise ValueError(
                f"'{dirs['train']}' has {len(train_classes)} class folder(s); need at least 2."
            )
        empty = [name for name, files in splits["train"].items() if not files]
        if empty:
            raise ValueError(f"Class folders without images in '{dirs['train']}': {empty}.")
        for split in ("val", "test"):
            if split not in splits:
                continue
            unknown = sorted(set(splits[split]) - set(train_classes))
            if unknown:
                raise ValueError(
                    f"Classes in '{dirs[split]}' that are not in '{dirs['train']}': {unknown}. "
                    "Every class needs training images; remove or rename those folders."
                )
            missing = sorted(set(train_classes) - set(splits[split]))
            if missing:
                log.warning("Split '%s' has no folder for classes %s.", split, missing)
        if "val" not in splits:
            splits["train"], splits["val"] = stratified_split(
                splits["train"], self.val_fraction, self.seed
            )
        return splits

    @property
    def splits(self) -> dict[str, dict[str, list[Path]]]:
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
        """Human-readable class names in label order (subclasses may map folder ids to names)."""
        return self.class_keys

    @property
    def num_classes(self) -> int:
        return len(self.class_keys)

    def samples(self, split: str) -> Samples:
        index = {name: i for i, name in enumerate(self.class_keys)}
        files = self.splits.get(split, {})
        return [(path, index[name]) for name in self.class_keys for path in files.get(name, [])]

    # ----------------------------------------------------------------- manifest
    def manifest(self) -> dict[str, object]:
        """The exact file lists of every split, relative to ``root``."""
        return {
            "root": str(self.root.resolve()),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "classes": self.class_keys,
            "splits": {
                split: [
                    [str(path.relative_to(self.root)), label] for path, label in self.samples(split)
                ]
                for split in SPLITS
                if split in self.splits
            },
        }

    def write_manifest(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "split_manifest.json").write_text(json.dumps(self.manifest(), indent=1))
        class_indices = {key: i for i, key in enumerate(self.class_keys)}
        (directory / "class_indices.json").write_text(
            json.dumps({"class_to_idx": class_indices, "names": self.class_names}, indent=1)
        )

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        train_tf = train_transform(self.input_size, self.mean, self.std, **self.augment)
        eval_tf = eval_transform(self.input_size, self.mean, self.std)
        for split in SPLITS:
            if split in self.splits:
                tf = train_tf if split == "train" else eval_tf
                self.datasets[split] = ImageListDataset(self.samples(split), tf)
        if self.output_dir is not None:
            self.write_manifest(self.output_dir)
        sizes = ", ".join(f"{split} {len(ds)}" for split, ds in self.datasets.items())
        log.info("Dataset '%s': %d classes; %s images.", self.name, self.num_classes, sizes)

    def has_split(self, split: str) -> bool:
        return bool(self.samples(split))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=shuffle and len(self.datasets[split]) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
