"""`mbv3 evaluate ckpt_path=<ckpt> [dataset=...]`: re-test a checkpoint.

Scores a saved checkpoint on a dataset's test split and writes the same files a training run
writes (metrics.json, per_class.csv, roc.json, curves.csv, PNGs) into a new run directory;
the work is :func:`mbv3_lightning.training.evaluate.evaluate`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mbv3_lightning.cli.config import config_dir, register_resolvers
from mbv3_lightning.cli.logs import route_lightning_logs

register_resolvers()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
def main(cfg: DictConfig) -> float:
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from mbv3_lightning.runs.result_table import print_result_table
    from mbv3_lightning.training.evaluate import evaluate

    route_lightning_logs()
    record = evaluate(cfg)
    print_result_table(record)
    return record.metrics["test/acc"]


if __name__ == "__main__":
    main()
