"""What a dataset looks like before anyone trains on it: counts, sizes, modes, duplicates.

Used by ``mbv3 check``. The report is a plain dict (saved as
``data_report.json``) so it can be diffed between dataset versions.
"""

from __future__ import annotations

import hashlib
import os
import statistics
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mbv3_lightning.data.image_folder import ImageFolderDataModule
from mbv3_lightning.data.images import is_image_file
from mbv3_lightning.data.scan_cache import default_cache_dir, inspect_images

# Short sides below this are flagged: they carry little detail once upscaled to 224 px.
TINY_IMAGE_PX = 32


def content_hash(path: Path) -> str:
    """BLAKE2b of the file's bytes: equal hashes mean byte-identical files."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _size_summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def find_duplicates(entries: list[tuple[str, str, Path]], root: Path) -> list[dict[str, Any]]:
    """Groups of byte-identical files among ``(split, class, path)`` entries.

    Each group says whether it crosses splits (train/test leakage) or classes (a label
    conflict: the same picture taught as two different classes).
    """
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        hashes = list(pool.map(content_hash, [path for _, _, path in entries]))
    groups: dict[str, list[tuple[str, str, Path]]] = defaultdict(list)
    for entry, digest in zip(entries, hashes, strict=True):
        groups[digest].append(entry)
    duplicates = []
    for digest, members in sorted(groups.items(), key=lambda item: str(item[1][0][2])):
        if len(members) < 2:
            continue
        duplicates.append(
            {
                "hash": digest,
                "splits": sorted({split for split, _, _ in members}),
                "across_splits": len({split for split, _, _ in members}) > 1,
                "across_classes": len({name for _, name, _ in members}) > 1,
                "files": [
                    {"split": split, "class": name, "path": str(path.relative_to(root))}
                    for split, name, path in members
                ],
            }
        )
    return duplicates


def ignored_files(image_paths: list[Path], root: Path) -> list[str]:
    """Files next to the images whose extension is not an image one (e.g. ``.heic``,
    ``.jfif``, ``.txt``): the scan skips them without decoding, so a class can hold fewer
    images than its folder suggests."""
    folders = {path.parent for path in image_paths}
    return sorted(
        str(path.relative_to(root))
        for folder in folders
        for path in folder.iterdir()
        if path.is_file() and not is_image_file(path)
    )


def audit(datamodule: ImageFolderDataModule) -> dict[str, Any]:
    """The full report for one DataModule's splits (as training would use them)."""
    splits = datamodule.splits
    names = dict(zip(datamodule.class_keys, datamodule.class_names, strict=True))
    entries = [
        (split, key, path)
        for split, files in splits.items()
        for key, paths in files.items()
        for path in paths
    ]
    infos = inspect_images([path for _, _, path in entries], default_cache_dir())
    per_split: dict[str, Any] = {}
    for split, files in splits.items():
        split_infos = [infos[path] for paths in files.values() for path in paths]
        short_sides = [min(info.width, info.height) for info in split_infos]
        per_split[split] = {
            "images": len(split_infos),
            "class_counts": {names.get(key, key): len(paths) for key, paths in files.items()},
            "width": _size_summary([info.width for info in split_infos]),
            "height": _size_summary([info.height for info in split_infos]),
            "tiny_images": sum(side < TINY_IMAGE_PX for side in short_sides),
            "colour_modes": dict(Counter(info.mode for info in split_infos).most_common()),
        }
    train_counts = [count for count in datamodule.class_counts("train") if count > 0]
    duplicates = find_duplicates(entries, datamodule.root)
    leaks = Counter("-".join(group["splits"]) for group in duplicates if group["across_splits"])
    return {
        "dataset": datamodule.name,
        "root": str(datamodule.root.resolve()),
        "layout": datamodule.manifest()["layout"],
        "num_classes": datamodule.num_classes,
        "classes": names,
        "splits": per_split,
        "imbalance_ratio": max(train_counts) / min(train_counts) if train_counts else None,
        "unreadable_files": {
            str(path.relative_to(datamodule.root)): error
            for path, error in datamodule.skipped_images.items()
        },
        "ignored_files": ignored_files([path for _, _, path in entries], datamodule.root),
        "duplicate_groups": len(duplicates),
        "leakage": dict(leaks),
        "duplicates": duplicates,
    }
