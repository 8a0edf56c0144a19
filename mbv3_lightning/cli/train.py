"""`python -m mbv3_lightning [overrides]`: train one configuration, or a grid with `-m`."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mbv3_lightning.cli.config import CONFIG_NAME, config_dir, register_resolvers
from mbv3_lightning.cli.errors import reports_errors
from mbv3_lightning.cli.logs import route_lightning_logs

register_resolvers()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name=CONFIG_NAME)
@reports_errors("train")
def main(cfg: DictConfig) -> float | None:
    """Train; returns val/acc_best, the objective of a search sweeper (Optuna)."""
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from mbv3_lightning.runs.result_table import print_result_table
    from mbv3_lightning.sweeps.cells import run_cell, sweep_size
    from mbv3_lightning.training.run import run

    route_lightning_logs()
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        # One failing cell is recorded in its directory and must not stop the others. A cell
        # prints a line as it starts and ends; its summary is in metrics.json and the report.
        record = run_cell(
            Path(cfg.paths.output_dir),
            job_num=hydra_cfg.job.num,
            overrides=list(hydra_cfg.overrides.task),
            resume=bool(cfg.sweep.resume),
            train=lambda status: run(cfg, status),
            sweep_dir=sweep_dir,
            # a grid's cells, else the trials a search sweeper (Optuna) was asked for
            total=sweep_size(sweep_dir) or hydra_cfg.sweeper.get("n_trials"),
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
