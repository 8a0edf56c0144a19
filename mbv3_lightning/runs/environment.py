"""Where a result came from: library versions and the git commit of the code that ran."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import lightning as L
import torch
import torchmetrics
import torchvision

_PACKAGE_DIR = Path(__file__).resolve().parent


def software_versions() -> dict[str, str]:
    """Versions of Python and the libraries whose numbers could change a result."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "torchmetrics": torchmetrics.__version__,
    }


def git_commit() -> str | None:
    """The commit of the code that ran (``None`` when not run from a git checkout)."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def process_rank() -> int:
    """This process's rank in a distributed run (0 alone): Lightning's, read from the
    launcher's environment (RANK, LOCAL_RANK, SLURM_PROCID) when it is imported."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0))
