"""`mbv3 evaluate ckpt_path=<ckpt|onnx|pt|pte|tflite> [dataset=...]`: re-test a model.

Scores a saved checkpoint, or an exported model run by its own runtime, on a dataset's test
split and writes the same files a training run writes (metrics.json, per_class.csv,
roc.json, curves.csv, PNGs) into a new run directory; the work is
:func:`mbv3_lightning.training.evaluate.evaluate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from mbv3_lightning.cli.config import config_dir, register_resolvers
from mbv3_lightning.cli.errors import reports_errors
from mbv3_lightning.cli.logs import route_lightning_logs

if TYPE_CHECKING:
    from mbv3_lightning.training.evaluate import ExportedNetwork

register_resolvers()


def exported_network(ckpt_path: str) -> ExportedNetwork | None:
    """The export at ``ckpt_path`` wrapped for ``Trainer.test``; None for a checkpoint."""
    from mbv3_lightning.deploy.predictor import is_exported_file, load_predictor
    from mbv3_lightning.deploy.runtime_network import RuntimeNetwork
    from mbv3_lightning.training.evaluate import ExportedNetwork

    if not is_exported_file(ckpt_path):
        return None
    predictor = load_predictor(ckpt_path)
    info = predictor.info
    return ExportedNetwork(
        network=RuntimeNetwork(predictor),
        runtime=predictor.runtime,
        arch=info.arch,
        class_names=list(info.class_names),
        input_size=info.input_size,
        mean=tuple(info.mean),
        std=tuple(info.std),
    )


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
@reports_errors("evaluate")  # a .pte / .tflite without its runtime: the install line
def main(cfg: DictConfig) -> float:
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    from mbv3_lightning.runs.result_table import print_result_table
    from mbv3_lightning.training.evaluate import evaluate

    route_lightning_logs()
    record = evaluate(cfg, exported_network(cfg.ckpt_path))
    print_result_table(record)
    return record.metrics["test/acc"]


if __name__ == "__main__":
    main()
