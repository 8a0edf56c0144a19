"""`python -m mbv3_lightning [overrides]`: train one configuration, or a grid with `-m`."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mbv3_lightning.cli.config import CONFIG_NAME, config_dir, register_resolvers
from mbv3_lightning.cli.errors import reports_errors

register_resolvers()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name=CONFIG_NAME)
@reports_errors("train")
def main(cfg: DictConfig) -> float | None:
    """Train; returns val/acc_best, the objective of a search sweeper (Optuna)."""
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from mbv3_lightning.runs.result_table import print_result_table
    from mbv3_lightning.sweeps.cells import run_cell
    from mbv3_lightning.training.run import run

    # Lightning prints through handlers of its own; under Hydra the root logger already prints
    # to the console and to <run dir>/train.log, so drop Lightning's to avoid every line twice.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # One failing cell is recorded in its directory and must not stop the others.
        record = run_cell(
            Path(cfg.paths.output_dir),
            job_num=hydra_cfg.job.num,
            overrides=list(hydra_cfg.overrides.task),
            resume=bool(cfg.sweep.resume),
            train=lambda status: run(cfg, status),
            sweep_dir=Path(hydra_cfg.sweep.dir),
        )
        if record is None:
            # A failed cell: NaN tells a search sweeper (Optuna) "failed trial" and lets the
            # study go on; the basic sweeper ignores return values.
            return float("nan")
    else:
        record = run(cfg)
    print_result_table(record)
    return record.metrics.get("val/acc_best")


if __name__ == "__main__":
    main()
