"""Find a checkpoint's labelled images again: its run's ``split_manifest.json`` or a folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from mbv3_lightning.data.images import is_image_file
from mbv3_lightning.data.splits import scan_class_folders
from mbv3_lightning.runs.run_dir import RunDir

Samples = list[tuple[Path, int]]


def run_dir_of(ckpt_path: Path) -> Path:
    """``<run dir>/checkpoints/x.ckpt`` -> ``<run dir>``."""
    return RunDir.of_checkpoint(ckpt_path).path


def manifest_samples(ckpt_path: Path, splits: Sequence[str]) -> Samples:
    """The ``(path, label)`` list of the first of ``splits`` that the run's manifest holds.

    Returns an empty list when the checkpoint is not inside a run directory with a manifest.
    """
    manifest_path = RunDir.of_checkpoint(ckpt_path).split_manifest
    if not manifest_path.is_file():
        return []
    manifest = json.loads(manifest_path.read_text())
    root = Path(manifest["root"])
    for split in splits:
        entries = manifest["splits"].get(split)
        if entries:
            return [(root / relative, int(label)) for relative, label in entries]
    return []


def class_keys_of_run(ckpt_path: Path) -> list[str]:
    """The class folder names the run trained on (may differ from display names)."""
    manifest_path = RunDir.of_checkpoint(ckpt_path).split_manifest
    if not manifest_path.is_file():
        return []
    return list(json.loads(manifest_path.read_text())["classes"])


def folder_samples(root: Path, class_labels: dict[str, int]) -> Samples:
    """``root/<class>/*`` labelled through ``class_labels`` (folder name -> label index)."""
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder '{root}' does not exist.")
    folders = scan_class_folders(root)
    unknown = sorted(set(folders) - set(class_labels))
    if unknown:
        raise ValueError(
            f"Class folders {unknown} in '{root}' are not classes of this model "
            f"({', '.join(sorted(class_labels))}). Name each folder after a class."
        )
    return [(path, class_labels[name]) for name, paths in folders.items() for path in paths]


def image_files(root: Path) -> list[Path]:
    """Every image under ``root`` (any layout), for unlabelled uses such as calibration."""
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder '{root}' does not exist.")
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
