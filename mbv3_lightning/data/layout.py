"""Finding a dataset's split folders however its copy is nested, named or capitalised.

Kaggle archives and their re-packed copies differ: ``fruits-360/Training``,
``fruits-360_100x100/fruits-360/Training``, ``training/training/n0``, ``train_data/``,
``Train/``, ``valid/``... A split folder is any folder whose name starts with ``train``,
``val`` or ``test`` (any case) and which holds class *folders*; this last condition keeps a
class that happens to be called "train" from being taken for a split. Without split folders
the class folders sit directly under the root (tf_flowers style): a "flat" layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# a folder is a split when its lower-case name starts with one of these (Training, valid, TEST_data)
SPLIT_PREFIXES = ("train", "val", "test")
MAX_SEARCH_DEPTH = 3


@dataclass(frozen=True)
class Layout:
    """Where the class folders are: one folder per split, or (flat) directly under ``root``."""

    root: Path
    splits: dict[str, Path] = field(default_factory=dict)

    @property
    def flat(self) -> bool:
        return not self.splits


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_of(folder_name: str) -> str | None:
    """``"train"``, ``"val"`` or ``"test"`` for a split-like folder name, else ``None``."""
    lower = folder_name.lower()
    return next((split for split in SPLIT_PREFIXES if lower.startswith(split)), None)


def unwrap(folder: Path, *, same_name: bool) -> Path:
    """Step into a sole sub-folder (only one of the same name if ``same_name``), repeatedly.

    ``training/training/n0`` -> ``training/training``; ``flower_photos/flower_photos/daisy``
    -> ``flower_photos/flower_photos``. Only a sole sub-folder that itself holds folders is
    entered, so a root with a single class folder stays the root.
    """
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir() or not _subdirs(entries[0]):
            return folder
        if same_name and entries[0].name.lower() != folder.name.lower():
            return folder
        folder = entries[0]


def _split_folders(folder: Path) -> dict[str, Path] | None:
    """The split folders directly inside ``folder`` (``None`` when there is no train folder)."""
    found: dict[str, list[Path]] = {}
    for child in _subdirs(folder):
        split = split_of(child.name)
        if split is not None and _subdirs(unwrap(child, same_name=True)):
            found.setdefault(split, []).append(child)
    if "train" not in found:
        return None
    ambiguous = {split: [p.name for p in dirs] for split, dirs in found.items() if len(dirs) > 1}
    if ambiguous:
        raise ValueError(
            f"Several folders in '{folder}' look like the same split: {ambiguous}. Keep one per "
            "split (move the others out), or point `dataset.root=` at a folder that has one."
        )
    # in train, val, test order, so reports list the splits the way people read them
    return {
        split: unwrap(found[split][0], same_name=True) for split in SPLIT_PREFIXES if split in found
    }


def find_layouts(root: Path) -> list[Layout]:
    """Candidate layouts under ``root``: those at the shallowest depth with a train folder.

    Several candidates mean several versions side by side (e.g. Fruits-360's 100x100 and
    original-size folders); the caller chooses. No train folder anywhere: one flat layout.
    """
    level = [root]
    for _ in range(MAX_SEARCH_DEPTH + 1):
        layouts = []
        for folder in level:
            splits = _split_folders(folder)
            if splits is not None:
                layouts.append(Layout(folder, splits))
        if layouts:
            return layouts
        level = [sub for folder in level for sub in _subdirs(folder)]
    return [Layout(unwrap(root, same_name=False))]
