"""Where the project's configs, studies and bundled demo data live.

From a source checkout (editable install) they sit at the repository root; an installed
wheel carries copies under ``mbv3_lightning/_resources`` (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def resource_path(name: str) -> Path:
    """Absolute path of a top-level project folder such as ``conf`` or ``data/fruits360-mini``."""
    for candidate in (_PACKAGE_DIR / "_resources" / name, _PACKAGE_DIR.parent / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"Project resource '{name}' not found next to the package ({_PACKAGE_DIR}). "
        "Reinstall with `pip install -e .` from a full checkout of the repository."
    )
