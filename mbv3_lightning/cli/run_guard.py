"""A Hydra callback that checks training's run folder before Hydra writes ``.hydra/`` into it."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mbv3_lightning.runs.run_dir import check_run_target


class RunDirGuard(Callback):
    """Stop a training job whose folder holds another or a finished run, before anything is
    written there (Hydra saves ``.hydra/config.yaml`` right after ``on_run_start``).

    ``sweep.resume=true`` is left to the job itself, which skips a finished folder unchanged.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if OmegaConf.select(config, "sweep.resume", default=False):
            return
        run_dir = OmegaConf.select(config, "hydra.run.dir")
        try:
            check_run_target(run_dir, OmegaConf.select(config, "ckpt_path", default=None))
        except FileExistsError as error:
            raise SystemExit(str(error)) from None
