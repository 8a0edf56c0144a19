"""A Hydra callback that claims the job's run folder and checks it before Hydra writes
``.hydra/`` into it (Hydra saves ``.hydra/config.yaml`` right after ``on_run_start``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from mbv3_lightning.runs.run_dir import (
    RunDir,
    check_run_target,
    checkpoint_run_dir,
    claim_run_dir,
)


def _explicit_run_dir(config: DictConfig) -> bool:
    overrides = OmegaConf.select(config, "hydra.overrides.hydra", default=[]) or []
    return any(str(o).split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for o in overrides)


def writable_problem(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or, if it does not exist yet, in the nearest
    existing folder above it, where it would be made), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"'{existing}' is a file, so the output folder '{folder}' cannot be made there"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"'{existing}' is not writable, so the output folder '{folder}' cannot be made"
    try:  # os.access does not see a read-only mount
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".mbv3-write-test-"):
            pass
    except OSError as error:
        return f"Cannot write into '{existing}' ({error.strerror or error})"
    return None


class RunDirGuard(Callback):
    """Give each job its own folder, checked before Hydra writes ``.hydra/`` into it.

    The default folder (``outputs/<date>/<time>``) is created exclusively, with ``-1``, ``-2``,
    ... when a job started in the same second has it, and written back into
    ``hydra.run.dir``, so jobs launched together never share a folder. A folder the user named
    (``hydra.run.dir=...``) or a resume into its checkpoint's folder is used as it is, and
    checked: training (``check_runs``) refuses one holding another or a finished run (a
    resume's further checks happen in the job, which writes ``.hydra/`` itself); every other
    command refuses a folder holding a training run, so evaluating or predicting never writes
    into one. ``sweep.resume=true`` is left to the job, which skips a finished folder unchanged.
    The output folder must be writable, checked before anything is made.
    """

    def __init__(self, check_runs: bool = False) -> None:
        self.check_runs = check_runs

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir")))
        problem = writable_problem(run_dir)
        if problem:
            raise SystemExit(f"{problem}. Choose another folder with `hydra.run.dir=...`.")
        ckpt_path = OmegaConf.select(config, "ckpt_path", default=None) if self.check_runs else None
        resuming = ckpt_path is not None and checkpoint_run_dir(ckpt_path) == run_dir
        if not _explicit_run_dir(config) and not resuming:
            run_dir = claim_run_dir(run_dir)
        with open_dict(config):
            config.hydra.run.dir = str(run_dir)  # resolved once: ${now:} must not move on
        if not self.check_runs:
            existing = RunDir(run_dir).run_files()
            if existing:
                task = OmegaConf.select(config, "task_name", default="this command")
                raise SystemExit(
                    f"'{run_dir}' holds a training run ({', '.join(existing)}); {task} writes "
                    "its results into a folder of its own and never into a run. Leave out "
                    "hydra.run.dir, or name a new folder."
                )
            return
        if OmegaConf.select(config, "sweep.resume", default=False):
            return
        try:
            check_run_target(run_dir, ckpt_path)
        except FileExistsError as error:
            raise SystemExit(str(error)) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(OmegaConf.select(config, "hydra.sweep.dir")))
        problem = writable_problem(sweep_dir)
        if problem:
            raise SystemExit(f"{problem}. Choose another folder with `hydra.sweep.dir=...`.")
