"""The test suite. This file runs before conftest.py and any test module imports the package
(Lightning reads a process's rank from the environment when it is imported), so the suite is
hermetic from here on."""

import os

# Hermetic: the shell's settings must not change what the tests see. W&B never talks to a
# server; Hydra's tracebacks, a scheduler's or launcher's job (SLURM, submitit, torchrun) and
# the user's caches and data folders are not the tests' business.
_CHANGES_BEHAVIOUR = ("HYDRA_FULL_ERROR", "MBV3_DATA_DIR", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
_CHANGES_BEHAVIOUR_PREFIXES = ("WANDB_", "SLURM_", "SUBMITIT_", "PL_", "LIGHTNING_")
for _name in list(os.environ):
    if _name in _CHANGES_BEHAVIOUR or _name.startswith(_CHANGES_BEHAVIOUR_PREFIXES):
        del os.environ[_name]
for _name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
    os.environ.pop(_name, None)
os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true")

# `pytest -n auto` runs one pytest-xdist worker per core; torch's default of one thread per core
# in every worker (and in every command a test starts) would oversubscribe the machine.
if _workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(_workers)))
