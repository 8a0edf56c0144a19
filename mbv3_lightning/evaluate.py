"""`python -m mbv3_lightning.evaluate ckpt_path=<ckpt> [dataset=...]`: re-test a checkpoint.

Scores a saved checkpoint on a dataset's test split and writes the same files a training run
writes (metrics.json, per_class.csv, roc.json, curves.csv, PNGs) into a new run directory.
Like ``train.py`` it is an entry job, so it instantiates the DataModule and Trainer itself.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from mbv3_lightning.config import config_dir, register_resolvers
from mbv3_lightning.run_files import (
    best_epoch,
    git_commit,
    model_cost,
    read_curves,
    software_versions,
    write_run_files,
)
from mbv3_lightning.wandb_logging import finish_wandb, log_run_results
from mbv3_lightning.wandb_login import wandb_offline

log = logging.getLogger(__name__)

register_resolvers()


def _check_same_classes(trained: list[str], found: list[str], root: Any) -> None:
    """Labels are positions in the class list: a different list would score nonsense."""
    if trained == found:
        return
    only_trained = sorted(set(trained) - set(found))
    only_found = sorted(set(found) - set(trained))
    detail = (
        f"only in the checkpoint: {only_trained}; only in the dataset: {only_found}"
        if only_trained or only_found
        else "same names in a different order"
    )
    raise ValueError(
        f"The checkpoint was trained on {len(trained)} classes and dataset '{root}' has "
        f"{len(found)} ({detail}). Evaluate on a dataset with the classes the model was "
        "trained on (`dataset=...`, `dataset.root=...`)."
    )


def _wandb_logger(cfg: DictConfig, model: Any, dataset: str, output_dir: Path) -> WandbLogger:
    """A W&B run of job type ``evaluate`` for ``wandb.enabled=true`` (offline unless logged
    in), named like the training run it scores, so the two sit side by side."""

    return WandbLogger(
        project=cfg.wandb.project,
        name=f"{model.arch}-{dataset}-s{cfg.seed}-evaluate",
        group=cfg.wandb.group,
        job_type="evaluate",
        save_dir=str(output_dir),
        offline=wandb_offline(),
    )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test ``cfg.ckpt_path`` on ``cfg.dataset``'s test split; returns the metrics.json dict.

    With ``wandb.enabled=true`` the W&B run is finished in every case, also when it raises.
    """
    failed = True
    try:
        summary = _evaluate(cfg)
        failed = False
        return summary
    finally:
        finish_wandb(failed)


def _evaluate(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = Path(cfg.ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(
            f"Checkpoint '{ckpt_path}' not found. Pass a saved one, e.g. "
            "`ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt`."
        )
    if (output_dir / "metrics.json").exists():
        raise FileExistsError(
            f"'{output_dir}' already holds results (metrics.json); choose another directory "
            "with `hydra.run.dir=...`."
        )
    L.seed_everything(cfg.seed, workers=True)
    model = get_class(cfg.model_class).load_from_checkpoint(ckpt_path, map_location="cpu")
    # A checkpoint's "epoch" is the 0-based epoch it was saved in, at that epoch's end.
    checkpoint = torch.load(ckpt_path, map_location="cpu", mmap=True, weights_only=True)
    trained_epochs = checkpoint["epoch"] + 1
    datamodule = instantiate(
        cfg.dataset,
        input_size=model.input_size,
        mean=model.mean,
        std=model.std,
        output_dir=output_dir,
    )
    _check_same_classes(list(model.class_names), list(datamodule.class_names), datamodule.root)
    if not datamodule.has_split("test"):
        raise ValueError(
            f"Dataset '{datamodule.name}' at '{datamodule.root}' has no test split "
            "(a `test/<class>/` folder); nothing to evaluate."
        )
    wandb_logger = (
        _wandb_logger(cfg, model, datamodule.name, output_dir) if cfg.wandb.enabled else None
    )
    if wandb_logger is not None:
        wandb_logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=wandb_logger or False, enable_checkpointing=False
    )
    results = trainer.test(model, datamodule=datamodule)
    report = model.test_report
    # The curves of the run that produced the checkpoint (<run dir>/checkpoints/<name>.ckpt).
    curves = read_curves(ckpt_path.resolve().parent.parent / "metrics.csv")
    test_images = next(iter(datamodule.test_dataloader()))[0]
    model.to(trainer.strategy.root_device)
    counts = model.parameter_counts()
    summary: dict[str, Any] = {
        "model": model.arch,
        "dataset": datamodule.name,
        "seed": cfg.seed,
        "input_size": model.input_size,
        "num_classes": len(model.class_names),
        "class_names": list(model.class_names),
        "epochs": trained_epochs,
        "metrics": {k: float(v) for k, v in results[0].items()},
        **counts,
        "train_time_s": None,
        "best_ckpt": str(ckpt_path),
        "run_dir": str(output_dir),
        "device": str(trainer.strategy.root_device),
        "torch_threads": torch.get_num_threads(),
        "versions": software_versions(),
        "git_commit": git_commit(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "best_epoch": best_epoch(curves),
        **model_cost(model.net, model.input_size, test_images, cfg.get("timing")),
        "per_class": report.per_class,
    }
    summary["wall_time_s"] = round(time.perf_counter() - started, 2)
    write_run_files(output_dir, summary, curves, report)
    if wandb_logger is not None:
        log_run_results(wandb_logger, summary, report, output_dir)
    return summary


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
def main(cfg: DictConfig) -> float:
    from mbv3_lightning.summary import print_summary

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()  # see __main__.py: no line printed twice
    summary = evaluate(cfg)
    print_summary(summary)
    return summary["metrics"]["test/acc"]


if __name__ == "__main__":
    main()
