"""Which images form train, val and test: the class folders of each split folder, the
protocol that assigns folders to splits, and the seeded stratified splits that carve out
the missing ones."""

from __future__ import annotations

import logging
import random
from pathlib import Path

from mbv3_lightning.data.images import is_image_file
from mbv3_lightning.data.layout import Layout

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# kaggle: the split folders are used as they are named. paper: the MobileNetV3
# image-classification paper's protocol (its section III.A), a seeded val_fraction of the
# training folder is validation, and a validation folder is the test set (10 Monkey Species'
# validation/ is its test set there, III.D.2).
PROTOCOLS = ("kaggle", "paper")
ClassFiles = dict[str, list[Path]]
Samples = list[tuple[Path, int]]


def scan_class_folders(split_dir: Path) -> ClassFiles:
    """``{class folder name: sorted image paths}`` for one split folder.

    A class "folder" that is a link back to the split folder or above it (a symlink loop) is
    skipped with a warning: scanned, it would hold every other class's images under its name.
    """
    classes: ClassFiles = {}
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
    files_per_class: ClassFiles, fraction: float, seed: int
) -> tuple[ClassFiles, ClassFiles]:
    """Move a seeded ``fraction`` of every class out (at least one image when a class has two).

    Each class is shuffled with its own generator seeded by ``(seed, class name)``, so adding
    or removing a class does not change the split of the others.
    """
    kept: ClassFiles = {}
    moved: ClassFiles = {}
    for name, files in files_per_class.items():
        order = sorted(files)
        random.Random(f"{seed}:{name}").shuffle(order)
        n_moved = round(len(order) * fraction)
        if len(order) >= 2:
            n_moved = min(max(n_moved, 1), len(order) - 1)
        moved[name] = sorted(order[:n_moved])
        kept[name] = sorted(order[n_moved:])
    return kept, moved


def split_source(layout: Layout, protocol: str, split: str) -> Path:
    """The folder a split's images come from under ``protocol``."""
    if protocol == "paper" and split == "test" and "test" not in layout.splits:
        return layout.splits.get("val", layout.root)
    if protocol == "paper" and split == "val":
        return layout.splits.get("train", layout.root)
    return layout.splits.get(split, layout.root)


def apply_protocol(
    splits: dict[str, ClassFiles], layout: Layout, protocol: str, val_fraction: float
) -> dict[str, ClassFiles]:
    """``paper``: the validation folder becomes the test split (validation is then carved
    from the training folder); ``kaggle`` keeps the folders' own roles."""
    if protocol != "paper" or "val" not in splits:
        return splits
    if "test" in splits:
        log.warning(
            "dataset.protocol=paper: '%s' has a test folder, so its validation folder '%s' "
            "is not used; validation is a seeded %.0f%% of the training folder.",
            layout.root,
            layout.splits["val"],
            100 * val_fraction,
        )
        return {"train": splits["train"], "test": splits["test"]}
    return {"train": splits["train"], "test": splits["val"]}


def select_classes(
    splits: dict[str, ClassFiles], classes: list[str], train_dir: Path
) -> dict[str, ClassFiles]:
    """Keep only ``classes`` (``dataset.classes``), in the order given there."""
    unknown = sorted(set(classes) - set(splits["train"]))
    if unknown:
        raise ValueError(
            f"dataset.classes names {unknown}, which are not class folders of '{train_dir}'. "
            f"Available: {sorted(splits['train'])}."
        )
    return {
        split: {name: files[name] for name in classes if name in files}
        for split, files in splits.items()
    }


def check_classes(
    splits: dict[str, ClassFiles], source: dict[str, Path], expected_layout: str
) -> None:
    """Every class needs train and val images; the test split may lack some (a warning)."""
    train = splits["train"]
    if len(train) < 2:
        raise ValueError(
            f"'{source['train']}' has {len(train)} class folder(s) {list(train)}; need at least "
            f"2. Expected layout: {expected_layout}."
        )
    for split, files in splits.items():
        empty = [name for name, names in files.items() if not names]
        unknown = sorted(set(files) - set(train))
        missing = sorted(set(train) - set(files))
        if unknown:
            raise ValueError(
                f"Classes in '{source[split]}' that are not in '{source['train']}': "
                f"{unknown}. Every class needs training images; remove or rename those "
                "folders, or pick classes with `dataset.classes=[...]`."
            )
        problem = f"without images in '{source[split]}'"
        if split == "test":
            if empty or missing:
                log.warning("Classes %s: %s.", problem, sorted(empty + missing))
        elif empty or missing:
            raise ValueError(
                f"Classes {problem}: {sorted(empty + missing)}. Add images, remove the "
                "class from every split, or pick classes with `dataset.classes=[...]`."
            )


def carve_validation(
    splits: dict[str, ClassFiles], fraction: float, seed: int, train_dir: Path
) -> dict[str, ClassFiles]:
    """A seeded, stratified ``fraction`` of every class's training images as validation."""
    # The split moves at least one image of a class with two; with one there is nothing to
    # validate on, which would show up only as a val/acc of 0.
    too_few = sorted(name for name, files in splits["train"].items() if len(files) < 2)
    if too_few:
        raise ValueError(
            f"Classes {too_few} have fewer than 2 images in '{train_dir}': one is needed for "
            "training and one for validation (dataset.val_fraction). Add images, add a `val/` "
            "folder, or leave those classes out with `dataset.classes=[...]`."
        )
    train, val = stratified_split(splits["train"], fraction, seed)
    return {**splits, "train": train, "val": val}
