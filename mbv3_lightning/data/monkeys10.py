"""10 Monkey Species (Kaggle ``slothkong/10-monkey-species``): folders ``n0``..``n9``.

The folder ids stay the stable class keys; the common names in ``monkey_labels.txt`` (e.g.
"mantled_howler") are the display names used in every report, plot and prediction.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from mbv3_lightning.data.image_folder import ImageFolderDataModule

log = logging.getLogger(__name__)

LABELS_FILE = "monkey_labels.txt"


def read_monkey_labels(path: Path) -> dict[str, str]:
    """``{"n0": "mantled_howler", ...}`` from ``monkey_labels.txt``.

    The file is CSV-like with a header row, fields padded with spaces and tabs, and CRLF line
    ends; its image-count columns do not match every copy, so only id and common name are read.
    """
    names: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 3 or not fields[0] or fields[0].lower() == "label":
            continue
        names[fields[0]] = fields[2]
    return names


class Monkeys10DataModule(ImageFolderDataModule):
    """``training/`` and ``validation/`` (doubled or not); display names from the labels file."""

    expected_layout = (
        "'<root>/training/training/n0..n9/*.jpg' and '<root>/validation/validation/n0..n9/*.jpg' "
        "(the doubled folder is optional), with '<root>/monkey_labels.txt' for the names"
    )

    def display_names(self, keys: list[str]) -> list[str]:
        """Common names from the first ``monkey_labels.txt`` under the root, else the ids."""
        return list(_display_names(self.root, tuple(keys)))


@functools.cache
def _display_names(root: Path, keys: tuple[str, ...]) -> tuple[str, ...]:
    """Cached per root and classes: a run asks several times (scan, setup, checks), and a
    missing or incomplete labels file is worth one warning, not one per question."""
    labels_file = next(iter(sorted(root.rglob(LABELS_FILE))), None)
    if labels_file is None:
        log.warning("No %s under '%s'; classes are named by folder id.", LABELS_FILE, root)
        return keys
    names = read_monkey_labels(labels_file)
    unnamed = [key for key in keys if key not in names]
    if unnamed:
        log.warning("%s names no classes %s; using their folder ids.", labels_file, unnamed)
    return tuple(names.get(key, key) for key in keys)
