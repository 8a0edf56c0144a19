"""`mbv3 predict ckpt_path=<ckpt|onnx|pt|pte|tflite> inputs=<file|folder|glob> top_k=5`.

A plain state dict (the car-colour MobileNetV3 recipe's ``best.pth``) also needs its class file and
architecture: ``ckpt_path=best.pth classes=class_indices.json arch=mobilenet_v3_small``.

Classifies images with a trained model: a table on stdout and ``predictions.csv`` in the
run directory. Unreadable files are reported and skipped, never silently dropped. The work
is in :mod:`mbv3_lightning.deploy.predict`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig
from rich.console import Console

from mbv3_lightning.cli.config import config_dir, register_resolvers
from mbv3_lightning.cli.errors import reports_errors
from mbv3_lightning.cli.logs import route_lightning_logs
from mbv3_lightning.deploy.predict import (
    predict_paths,
    render_predictions,
    resolve_inputs,
    write_predictions_csv,
)
from mbv3_lightning.deploy.predictor import load_predictor

log = logging.getLogger(__name__)

register_resolvers()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="predict")
@reports_errors("predict")  # an .onnx / .pte / .tflite without its runtime: the install line
def main(cfg: DictConfig) -> None:
    route_lightning_logs()
    if cfg.top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {cfg.top_k}.")
    predictor = load_predictor(
        cfg.ckpt_path,
        classes=cfg.get("classes"),
        arch=cfg.get("arch"),
        input_size=cfg.get("input_size"),
    )
    paths = resolve_inputs(str(cfg.inputs))
    log.info(
        "Classifying %d file(s) with %s (%s).", len(paths), predictor.source, predictor.runtime
    )
    predictions = predict_paths(predictor, paths, cfg.top_k, cfg.batch_size, show_progress=True)
    out = Path(cfg.output_dir) / "predictions.csv"
    write_predictions_csv(predictions, out, cfg.top_k)
    skipped = sum(1 for p in predictions if p.error)
    title = f"{predictor.info.arch} ({predictor.runtime}) on {len(paths)} file(s)"
    Console().print(render_predictions(predictions, title))
    if skipped:
        log.warning(
            "%d of %d file(s) could not be read; see the `error` column.", skipped, len(paths)
        )
    print(f"Predictions in {out}")  # the CLI's final summary


if __name__ == "__main__":
    main()
