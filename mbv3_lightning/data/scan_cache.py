"""Decode-check every image once, and remember the answer keyed by a hash of the file list.

Fully decoding tens of thousands of photos takes minutes; re-running an experiment on the
same files must not. The cache lives outside the dataset folder (``$MBV3_CACHE_DIR``, default
``~/.cache/mbv3_lightning``); any added, removed, resized or touched file changes the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from mbv3_lightning.data.images import ImageInfo, inspect_image

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$MBV3_CACHE_DIR`` or ``~/.cache/mbv3_lightning``."""
    return Path(os.environ.get("MBV3_CACHE_DIR", "~/.cache/mbv3_lightning")).expanduser()


def file_list_key(paths: Sequence[Path]) -> str:
    """A hash of every path with its size and modification time."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _load(cache_file: Path, paths: Sequence[Path]) -> dict[Path, ImageInfo] | None:
    try:
        stored = json.loads(cache_file.read_text())
        infos = {path: ImageInfo(**stored[str(path)]) for path in paths}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or written by an older version: scan again
    return infos


def _save(cache_file: Path, infos: dict[Path, ImageInfo]) -> None:
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({str(p): asdict(i) for p, i in infos.items()}))
        partial.replace(cache_file)  # atomic: a reader never sees half a file
    except OSError as exc:
        log.warning(
            "Could not write the image scan cache '%s' (%s); next run scans again.", cache_file, exc
        )


def inspect_images(paths: Sequence[Path], cache_dir: Path | None = None) -> dict[Path, ImageInfo]:
    """:func:`inspect_image` for every path, read from / written to the cache when possible."""
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / "image_scans" / f"{file_list_key(paths)}.json"
        cached = _load(cache_file, paths)
        if cached is not None:
            log.info("Image check of %d files read from the cache '%s'.", len(paths), cache_file)
            return cached
    started = time.perf_counter()
    # Pillow releases the GIL while decoding, so threads use every core without pickling.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        infos = dict(zip(paths, pool.map(inspect_image, paths), strict=True))
    log.info("Checked %d images in %.1f s.", len(paths), time.perf_counter() - started)
    if cache_file is not None:
        _save(cache_file, infos)
    return infos
