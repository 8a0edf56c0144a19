"""Unreadable images (``dataset.bad_images``): every file is decode-checked once (cached), and
the bad ones are skipped with a warning naming each, or stop the run listing them."""

from __future__ import annotations

import logging
from pathlib import Path

from mbv3_lightning.data.images import ImageInfo
from mbv3_lightning.data.scan_cache import default_cache_dir, inspect_images
from mbv3_lightning.data.splits import ClassFiles

log = logging.getLogger(__name__)

BAD_IMAGE_POLICIES = ("skip", "error")
# Past this many, a bad-image error lists the first ones and the count (the log has them all).
_MAX_LISTED = 20


def drop_bad_images(
    splits: dict[str, ClassFiles], policy: str, root: Path
) -> tuple[dict[str, ClassFiles], dict[Path, str], dict[Path, tuple[int, int]]]:
    """The splits without their unreadable files, ``{path: why}`` of those, and the
    ``(width, height)`` of every readable one; or, with ``policy="error"``, an error listing
    the unreadable ones."""
    paths = [path for files in splits.values() for names in files.values() for path in names]
    infos: dict[Path, ImageInfo] = inspect_images(paths, default_cache_dir())
    bad = {path: info.error or "" for path, info in infos.items() if not info.ok}
    if bad and policy == "error":
        first = list(bad.items())[:_MAX_LISTED]
        listed = "\n".join(f"  {path}: {error}" for path, error in first)
        more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise ValueError(
            f"{len(bad)} unreadable image(s) in '{root}':\n{listed}{more}\n"
            "Delete or replace them, or set `dataset.bad_images=skip` to train without them."
        )
    for path, error in bad.items():
        log.warning("Skipping unreadable image '%s' (%s).", path, error)
    sizes = {path: (info.width, info.height) for path, info in infos.items()}
    kept = {
        split: {name: [p for p in names if p not in bad] for name, names in files.items()}
        for split, files in splits.items()
    }
    return kept, bad, sizes
