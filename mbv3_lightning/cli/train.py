"""`python -m mbv3_lightning [overrides]`: train one configuration, or a grid with `-m`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from mbv3_lightning.cli.config import CONFIG_NAME, config_dir, register_resolvers
from mbv3_lightning.cli.errors import reports_errors
from mbv3_lightning.cli.logs import route_lightning_logs
from mbv3_lightning.cli.pte_timing import pte_cost

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import Callback

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
    deploy_cost = pte_cost(cfg, hydra_cfg)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sweep_dir = Path(hydra_cfg.sweep.dir)
        # One failing cell is recorded in its directory and must not stop the others. A cell
        # prints a line as it starts and ends; its summary is in metrics.json and the report.
        record = run_cell(
            Path(cfg.paths.output_dir),
            job_num=hydra_cfg.job.num,
            overrides=list(hydra_cfg.overrides.task),
            resume=bool(cfg.sweep.resume),
            train=lambda status: run(cfg, status, _search_trial_callbacks(hydra_cfg), deploy_cost),
            sweep_dir=sweep_dir,
            # a grid's cells, else the trials a search sweeper (Optuna) was asked for
            total=sweep_size(sweep_dir) or hydra_cfg.sweeper.get("n_trials"),
        )
        if record is None:
            # A failed cell: NaN tells a search sweeper (Optuna) "failed trial" and lets the
            # study go on; the basic sweeper ignores return values.
            return float("nan")
    else:
        record = run(cfg, deploy_cost=deploy_cost)
        print_result_table(record)
    return record.metrics.get("val/acc_best")


def _is_search_trial(hydra_cfg: Any) -> bool:
    """Whether this job is a trial of `hydra/sweeper=optuna` (not a cell of a grid)."""
    from mbv3_lightning.sweeps.search import SWEEPER_TARGET  # a constant: imports no Optuna

    return hydra_cfg.sweeper.get("_target_") == SWEEPER_TARGET


def _search_trial_callbacks(hydra_cfg: Any) -> list[Callback]:
    """A trial of `hydra/sweeper=optuna` reports to its study each epoch, for the pruner."""
    if not _is_search_trial(hydra_cfg):
        return []  # a grid: no study to report to (and no need to load Optuna)
    from mbv3_lightning.sweeps.search.trial import trial_reporter
    from mbv3_lightning.training.pruning import TrialPruning

    reporter = trial_reporter(hydra_cfg)
    return [] if reporter is None else [TrialPruning(reporter.report, reporter.monitor)]


if __name__ == "__main__":
    main()
