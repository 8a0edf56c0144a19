"""A Hydra callback that claims the job's run folder and checks it before Hydra writes
``.hydra/`` into it (Hydra saves ``.hydra/config.yaml`` right after ``on_run_start``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from mbv3_lightning.runs.run_dir import check_run_target, checkpoint_run_dir, claim_run_dir


def _explicit_run_dir(config: DictConfig) -> bool:
    overrides = OmegaConf.select(config, "hydra.overrides.hydra", default=[]) or []
    return any(str(o).split("=", 1)[0].lstrip("+~") == "hydra.run.dir" for o in overrides)


class RunDirGuard(Callback):
    """Give each job its own folder, and (``check_runs``, training) refuse one holding another
    or a finished run.

    The default folder (``outputs/<date>/<time>``) is created exclusively, with ``-1``, ``-2``,
    ... when a job started in the same second has it, and written back into
    ``hydra.run.dir``, so jobs launched together never share a folder. A folder the user named
    (``hydra.run.dir=...``) or a resume into its checkpoint's folder is used as it is, and
    checked. ``sweep.resume=true`` is left to the job, which skips a finished folder unchanged.
    """

    def __init__(self, check_runs: bool = False) -> None:
        self.check_runs = check_runs

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir")))
        ckpt_path = OmegaConf.select(config, "ckpt_path", default=None) if self.check_runs else None
        resuming = ckpt_path is not None and checkpoint_run_dir(ckpt_path) == run_dir
        if not _explicit_run_dir(config) and not resuming:
            run_dir = claim_run_dir(run_dir)
        with open_dict(config):
            config.hydra.run.dir = str(run_dir)  # resolved once: ${now:} must not move on
        if not self.check_runs or OmegaConf.select(config, "sweep.resume", default=False):
            return
        try:
            check_run_target(run_dir, ckpt_path)
        except FileExistsError as error:
            raise SystemExit(str(error)) from None
