"""The suite is hermetic: settings a user keeps in their shell do not reach the tests."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_the_shells_settings_are_cleared_before_the_package_is_imported():
    shell = {
        **os.environ,
        "HYDRA_FULL_ERROR": "1",
        "WANDB_MODE": "online",
        "WANDB_API_KEY": "not-a-key",
        "SLURM_JOB_ID": "1",
        "SUBMITIT_EXECUTOR": "slurm",
        "RANK": "3",
    }
    probe = (
        "import os, tests; from lightning.pytorch.utilities.rank_zero import rank_zero_only; "
        "print(sorted(k for k in os.environ if k.startswith(('HYDRA_FULL', 'SLURM', 'SUBMITIT'"
        ", 'WANDB_API', 'RANK'))), os.environ['WANDB_MODE'], rank_zero_only.rank)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, env=shell, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "offline", "0"]
