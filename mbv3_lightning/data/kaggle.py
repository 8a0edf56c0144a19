"""Getting a Kaggle dataset onto disk with ``kagglehub``, or telling the user how to."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

CREDENTIALS_HINT = (
    "needs internet access and, for most datasets, Kaggle credentials "
    "(~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY)"
)


def missing_dataset_message(name: str, root: Path, handle: str | None, layout: str) -> str:
    """What is missing, the layout we expect, and the two ways to fix it."""
    message = (
        f"Dataset '{name}': folder '{root}' does not exist. Expected layout: {layout}. "
        f"Point to a local copy with `dataset.root=/path/to/{name}`"
    )
    if handle:
        message += (
            f", or download it from Kaggle ('{handle}', https://www.kaggle.com/datasets/{handle}) "
            f"with `dataset.download=true` ({CREDENTIALS_HINT})"
        )
    return message + "."


def download_dataset(handle: str | None, destination: Path, *, name: str, layout: str) -> Path:
    """Download ``handle`` into ``destination`` with ``kagglehub``; a clear error if that fails."""
    if not handle:
        raise ValueError(
            f"`dataset.download=true` needs a Kaggle handle for '{name}': set "
            f"`dataset.kaggle_handle=<owner>/<dataset>`, or point to a local copy with "
            f"`dataset.root=/path/to/{name}` (expected layout: {layout})."
        )
    import kagglehub  # imported here: only a download needs it

    log.info("Downloading Kaggle dataset '%s' into '%s' ...", handle, destination)
    try:
        path = kagglehub.dataset_download(handle, output_dir=str(destination))
    except Exception as exc:  # offline, 401/403/404, quota: all end the same way for the user
        raise RuntimeError(
            f"Could not download Kaggle dataset '{handle}' ({type(exc).__name__}: {exc}). "
            f"The download {CREDENTIALS_HINT}. Alternatively download it by hand and point "
            f"to it with `dataset.root=/path/to/{name}` (expected layout: {layout})."
        ) from exc
    log.info("Kaggle dataset '%s' is in '%s'.", handle, path)
    return Path(path)
