"""``split_manifest.json``: the exact file lists of a run's splits; and a resumed run keeps the
split it started with by reading them back.

Drawing the split again after images were added or removed moves images between train and
validation: images the model trained on would be scored as unseen. So a resume reads the
lists back, checks each file is still there and readable, and reports images that are new
since (they are not used). A manifest is data read from a file: only its relative paths and
integer labels are used, each checked to lie under the dataset root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mbv3_lightning.data.layout import Layout
from mbv3_lightning.data.splits import ClassFiles, split_source

# Past this many, the lists in a message are cut short (the count is always given).
_SHOWN = 10


class SplitManifestError(ValueError):
    """A saved split cannot be reused with the dataset as it is now."""


def read_manifest(path: Path) -> dict[str, Any]:
    """A ``split_manifest.json``, or an error naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SplitManifestError(f"Cannot read the saved split '{path}': {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("splits"), dict):
        raise SplitManifestError(f"'{path}' is not a split manifest (no `splits`).")
    return data


def _listed(paths: list[str]) -> str:
    more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
    return ", ".join(paths[:_SHOWN]) + more


def reuse_split(
    manifest: dict[str, Any], source: Path, root: Path, current: dict[str, ClassFiles]
) -> tuple[dict[str, ClassFiles], list[Path]]:
    """The split of ``manifest`` (read from ``source``) over the dataset at ``root``, whose
    readable images are now ``current``; and the images found now that it does not list.

    Refused (:class:`SplitManifestError`) when the classes differ or a listed image is gone
    or no longer readable: the run could not continue on the data it started with.
    """
    classes = manifest.get("classes")
    now = list(current["train"])
    if classes != now:
        only_then = sorted(set(classes or []) - set(now))
        only_now = sorted(set(now) - set(classes or []))
        detail = (
            f"only in the saved split: {only_then}; only in the dataset now: {only_now}"
            if only_then or only_now
            else "the same class folders in another order"
        )
        raise SplitManifestError(
            f"The classes of '{root}' changed since this run started ({detail}; saved in "
            f"'{source}'). Resume on the dataset it was trained on, or start a new run."
        )
    readable = {
        path.resolve() for files in current.values() for ps in files.values() for path in ps
    }
    root_resolved = root.resolve()
    splits: dict[str, ClassFiles] = {}
    missing: list[str] = []
    for split, rows in manifest["splits"].items():
        files: ClassFiles = {name: [] for name in classes}
        for relative, label in rows:
            path = (root / str(relative)).resolve()
            if root_resolved not in path.parents or not 0 <= int(label) < len(classes):
                raise SplitManifestError(f"'{source}' lists {relative!r}, outside '{root}'.")
            if path not in readable:
                missing.append(str(relative))
                continue
            files[classes[int(label)]].append(root / str(relative))
        splits[str(split)] = files
    if missing:
        raise SplitManifestError(
            f"{len(missing)} image(s) of this run's saved split are gone from '{root}' or no "
            f"longer readable: {_listed(missing)}. Restore them to resume (the saved split is "
            f"'{source}'), or start a new run."
        )
    used = {path.resolve() for files in splits.values() for ps in files.values() for path in ps}
    added = sorted(path for path in readable if path not in used)
    return splits, added


def build_manifest(
    *,
    root: Path,
    layout: Layout,
    protocol: str,
    preprocess: str,
    seed: int,
    val_fraction: float,
    test_fraction: float | None,
    class_keys: list[str],
    samples: dict[str, list[tuple[Path, int]]],
    skipped: dict[Path, str],
) -> dict[str, Any]:
    """``split_manifest.json``: the exact file lists of every split, relative to ``root``,
    which folder each split came from, and what was skipped."""
    folders = layout.splits or {"all": layout.root}
    return {
        "root": str(root.resolve()),
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "layout": {split: str(path.relative_to(root)) for split, path in folders.items()},
        "protocol": protocol,
        "split_sources": {
            split: str(split_source(layout, protocol, split).relative_to(root)) for split in samples
        },
        "preprocess": preprocess,
        "classes": class_keys,
        "splits": {
            split: [[str(path.relative_to(root)), label] for path, label in rows]
            for split, rows in samples.items()
        },
        "skipped_images": {str(path.relative_to(root)): error for path, error in skipped.items()},
    }


def class_indices(class_keys: list[str], class_names: list[str]) -> dict[str, Any]:
    """``class_indices.json``: the index -> name map first, in the car-colour MobileNetV3
    recipe's shape (``{"0": "black", ...}``), so its scripts and ``predict classes=`` read this
    file as they read the recipe's; then class folder -> label index and the display names."""
    return {
        **{str(i): name for i, name in enumerate(class_names)},
        "class_to_idx": {key: i for i, key in enumerate(class_keys)},
        "names": class_names,
    }
