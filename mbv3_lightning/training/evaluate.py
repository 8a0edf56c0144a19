"""Re-test a checkpoint or an exported model (``mbv3 evaluate``, mbv3_lightning/cli/evaluate.py).

Scores a saved checkpoint on a dataset's test split through ``Trainer.test`` and writes the
same files a training run writes (metrics.json, per_class.csv, roc.json, curves.csv, PNGs),
built by the same :func:`mbv3_lightning.runs.record.build_run_record`, into a new run directory.
Like :mod:`mbv3_lightning.training.run` it instantiates the DataModule and Trainer itself.

An exported file (ONNX, TorchScript, ExecuTorch, LiteRT) goes through the same loop: the
command hands in an :class:`ExportedNetwork` whose module runs the file's runtime, and the
classifier's metrics score it exactly as they score a checkpoint's network.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from mbv3_lightning.models.safe_load import load_checkpoint
from mbv3_lightning.perf.inference_time import model_cost
from mbv3_lightning.runs.files import best_epoch, read_curves, write_run_files, write_split_files
from mbv3_lightning.runs.record import RunRecord, build_run_record
from mbv3_lightning.runs.run_dir import RunDir
from mbv3_lightning.tracking.logger import (
    WANDB_GROUP_KEY,
    ProjectWandbLogger,
    finish_wandb,
    wandb_run_id_from_checkpoint,
)
from mbv3_lightning.tracking.results import log_run_results
from mbv3_lightning.tracking.run_config import dataset_facts
from mbv3_lightning.training.console import CompactProgressBar, silence_library_noise
from mbv3_lightning.training.module import ImageClassifier
from mbv3_lightning.training.predictions import sample_predictions
from mbv3_lightning.training.run import plain_config, record_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportedNetwork:
    """An exported model file to evaluate: a module returning its runtime's logits, and the
    facts its metadata carries (checked by the loader that read the file)."""

    network: torch.nn.Module
    runtime: str
    arch: str
    class_names: list[str]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


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


def _wandb_logger(cfg: DictConfig, model: Any, dataset: str) -> ProjectWandbLogger | None:
    """With ``logger=wandb``: the training runs' W&B logger (``conf/logger/wandb.yaml``) as a
    run of job type ``evaluate``, named like the training run it scores and in its group
    (stored in the checkpoint), so the two sit side by side."""
    node = (cfg.get("logger") or {}).get("wandb")
    if not node:
        return None
    group = node.get("group") or wandb_run_id_from_checkpoint(cfg.ckpt_path, WANDB_GROUP_KEY)
    return instantiate(
        node,
        name=node.get("name") or f"{model.arch}-{dataset}-s{cfg.seed}-evaluate",
        group=group or "evaluate",
        job_type="evaluate",
    )


def evaluate(cfg: DictConfig, exported: ExportedNetwork | None = None) -> RunRecord:
    """Test ``cfg.ckpt_path`` on ``cfg.dataset``'s test split; returns the record saved as
    metrics.json. ``exported``: the file at ``cfg.ckpt_path`` is an export, run by this.

    With ``logger=wandb`` the W&B run is finished in every case, also when it raises.
    """
    failed = True
    try:
        record = _evaluate(cfg, exported)
        failed = False
        return record
    finally:
        finish_wandb(failed)


def _classifier_around(model_class: type, exported: ExportedNetwork) -> ImageClassifier:
    """The classifier (loss, metrics, test report) with the exported file as its network."""
    model = model_class(
        net={"arch": exported.arch, "pretrained": False, "weights_path": None},
        num_classes=len(exported.class_names),
        class_names=list(exported.class_names),
        input_size=exported.input_size,
        optimizer=None,  # scored only, never trained
        scheduler=None,
    )
    model.net = exported.network
    model.mean, model.std = exported.mean, exported.std
    return model


def _evaluate(cfg: DictConfig, exported: ExportedNetwork | None) -> RunRecord:
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = Path(cfg.ckpt_path)
    if not ckpt_path.is_file():
        raise FileNotFoundError(
            f"Checkpoint '{ckpt_path}' not found. Pass a saved one, e.g. "
            "`ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt`."
        )
    if RunDir(output_dir).holds_finished_run():
        raise FileExistsError(
            f"'{output_dir}' already holds results (metrics.json); choose another directory "
            "with `hydra.run.dir=...`."
        )
    silence_library_noise()
    L.seed_everything(cfg.seed, workers=True)
    model_class = get_class(cfg.model_class)
    if not (isinstance(model_class, type) and issubclass(model_class, ImageClassifier)):
        raise ValueError(
            f"model_class={cfg.model_class} is not an ImageClassifier; evaluate scores "
            "checkpoints of mbv3_lightning.training.module.ImageClassifier (or a subclass)."
        )
    if exported is None:
        # The classifier's own loader: weights-only, and its hyper-parameters checked as data.
        model = model_class.load_from_checkpoint(ckpt_path, map_location="cpu")
        # A checkpoint's "epoch" is the 0-based epoch it was saved in, at that epoch's end.
        checkpoint = load_checkpoint(ckpt_path, mmap=True)
        trained_epochs = checkpoint["epoch"] + 1
    else:
        model = _classifier_around(model_class, exported)
        trained_epochs = None  # an export does not record its training
    datamodule = instantiate(
        cfg.dataset,
        input_size=model.input_size,
        mean=model.mean,
        std=model.std,
    )
    _check_same_classes(list(model.class_names), list(datamodule.class_names), datamodule.root)
    if not datamodule.has_split("test"):
        raise ValueError(
            f"Dataset '{datamodule.name}' at '{datamodule.root}' has no test split "
            "(a `test/<class>/` folder); nothing to evaluate."
        )
    write_split_files(output_dir, datamodule.manifest(), datamodule.class_indices())
    wandb_logger = _wandb_logger(cfg, model, datamodule.name)
    if wandb_logger is not None:
        wandb_logger.log_config(plain_config(cfg), dataset_facts(datamodule))
    # An exported file runs on the CPU whatever the machine has: batches stay there.
    on_cpu = {"accelerator": "cpu"} if exported is not None else {}
    # the training run's bar: elapsed, time left and images per second
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=wandb_logger or False,
        enable_checkpointing=False,
        callbacks=[CompactProgressBar()],
        **on_cpu,
    )
    # verbose=False: Lightning's table prints raw float32 values; the result table rounds them.
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    report = model.test_report
    # The curves of the run that produced the checkpoint (<run dir>/checkpoints/<name>.ckpt).
    curves = read_curves(RunDir.of_checkpoint(ckpt_path).metrics_csv) if exported is None else []
    test_images = next(iter(datamodule.test_dataloader()))[0]
    model.to(trainer.strategy.root_device)
    context = record_context(cfg, model, datamodule, trainer)
    if exported is not None:
        # The file's runtime is what was timed; its parameters and MACs are not counted (the
        # export keeps no network configuration beyond the architecture's name).
        context["device"] = f"{context['device']} ({exported.runtime})"
        context["parameter_counts"] = {"params_total": None, "params_trainable": None}
    cost = model_cost(
        model.net,
        model.input_size,
        test_images,
        cfg.get("timing"),
        test_batches=datamodule.test_dataloader(),
        count_complexity=exported is None,
    )
    record = build_run_record(
        **context,
        epochs=trained_epochs,
        metrics=results[0],
        train_time_s=None,
        best_ckpt=str(ckpt_path),
        best_epoch=best_epoch(curves),
        cost=cost,
        per_class=report.per_class,
        started=started,
    )
    write_run_files(output_dir, record, curves, report)
    if wandb_logger is not None:
        predictions = sample_predictions(model, datamodule.test_dataloader().dataset)
        log_run_results(wandb_logger, record, report, output_dir, predictions)
    return record
