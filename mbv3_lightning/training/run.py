"""One training job: config -> (DataModule, ImageClassifier, Trainer) -> fit -> test -> files.

It builds the run's objects from the user's own config with ``hydra.utils.instantiate``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, cast

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from mbv3_lightning.data.image_folder import ImageFolderDataModule
from mbv3_lightning.models.hparams import read_checked_hparams
from mbv3_lightning.models.registry import get_spec
from mbv3_lightning.perf.inference_time import model_cost
from mbv3_lightning.runs.environment import process_rank
from mbv3_lightning.runs.files import (
    best_epoch,
    last_epoch_metrics,
    read_curves,
    write_run_files,
    write_split_files,
)
from mbv3_lightning.runs.lock import run_lock
from mbv3_lightning.runs.pruned import RunPruned
from mbv3_lightning.runs.record import RunRecord, build_run_record
from mbv3_lightning.runs.resume import check_resume, load_completed_record, plan_resume
from mbv3_lightning.runs.run_dir import RunDir, check_run_target, write_job_config
from mbv3_lightning.runs.status import RunStatus
from mbv3_lightning.tracking.logger import (
    ProjectWandbLogger,
    WandbRunIdInCheckpoint,
    find_wandb_logger,
    finish_wandb,
    wandb_resume_kwargs,
)
from mbv3_lightning.tracking.results import log_run_results
from mbv3_lightning.tracking.run_config import dataset_facts
from mbv3_lightning.training.callbacks import TrainTime
from mbv3_lightning.training.checkpoint_io import RunFolderCheckpointIO
from mbv3_lightning.training.console import silence_library_noise
from mbv3_lightning.training.metrics import per_class_epoch_rows
from mbv3_lightning.training.module import ImageClassifier
from mbv3_lightning.training.predictions import sample_predictions
from mbv3_lightning.training.preemption import RunInterrupted

log = logging.getLogger(__name__)


def resolve_input_size(cfg: DictConfig) -> int:
    """``model.input_size``, else the dataset's preferred size, else the architecture default."""
    spec = get_spec(cfg.model.net.arch)
    return int(cfg.model.get("input_size") or cfg.dataset.get("input_size") or spec.input_size)


def _wandb_group(cfg: DictConfig) -> str:
    """All jobs of one multirun share a W&B group named after the sweep directory; a single
    run of an `experiment=...` is grouped under the experiment's name."""
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    if hydra_cfg is not None and hydra_cfg.mode == RunMode.MULTIRUN:
        sweep = Path(hydra_cfg.sweep.dir)
        return f"{cfg.task_name}-{sweep.parent.name}-{sweep.name}"
    experiment = hydra_cfg.runtime.choices.get("experiment") if hydra_cfg is not None else None
    return experiment or cfg.task_name


def _instantiate_all(section: DictConfig | None, **extra: Any) -> list[Any]:
    """Instantiate every entry of a dict of ``_target_`` configs (``null`` entries are skipped)."""
    if not section:
        return []
    return [instantiate(node, **extra) for node in section.values() if node and "_target_" in node]


def _multirun_safe_strategy(cfg: DictConfig) -> None:
    """Use ``ddp_spawn`` instead of ``ddp`` inside a Hydra multirun.

    Lightning's ``ddp`` starts each extra process by re-running ``sys.argv``; under ``-m`` that
    is the whole multirun, so every cell would start the grid again in new directories.
    ``ddp_spawn`` forks the workers from inside this job instead.
    """
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return
    if cfg.trainer.get("strategy") == "ddp" and cfg.trainer.get("devices") not in (1, "1"):
        log.warning("Multirun job: using strategy 'ddp_spawn' instead of 'ddp'.")
        with open_dict(cfg):
            cfg.trainer.strategy = "ddp_spawn"


def _saved_split(ckpt_path: str | None) -> Path | None:
    """The split_manifest.json of the run a checkpoint belongs to, which its resume reuses."""
    if not ckpt_path:
        return None
    manifest = RunDir.of_checkpoint(ckpt_path).split_manifest
    return manifest if manifest.is_file() else None


def build_components(
    cfg: DictConfig,
) -> tuple[ImageFolderDataModule, ImageClassifier, list[Callback], list[Logger]]:
    """Instantiate the DataModule, the classifier, callbacks and loggers from ``cfg``.

    A resume (``ckpt_path``) reuses the split its run saved instead of drawing one again.
    """
    spec = get_spec(cfg.model.net.arch)
    input_size = resolve_input_size(cfg)
    datamodule: ImageFolderDataModule = instantiate(
        cfg.dataset,
        input_size=input_size,
        mean=spec.mean,
        std=spec.std,
        split_manifest=_saved_split(cfg.get("ckpt_path")),
    )
    # Not recursive: the classifier gets the `net`, `optimizer` and `scheduler` nodes as config
    # (saved in its hyper-parameters) and instantiates them itself, with num_classes and the
    # parameters they still lack.
    model: ImageClassifier = instantiate(
        cfg.model,
        num_classes=datamodule.num_classes,
        class_names=list(datamodule.class_names),
        class_weights=getattr(datamodule, "class_weights", None),
        input_size=input_size,
        channels_last=cfg.get("channels_last", "auto"),
        preprocess=getattr(datamodule, "preprocess", "augment"),
        optimizer=cfg.optimizer,
        scheduler=cfg.get("scheduler"),
        _recursive_=False,
        _convert_="all",
    )
    callbacks = _instantiate_all(cfg.get("callbacks"))
    loggers: list[Logger] = []
    for name, node in (cfg.get("logger") or {}).items():
        if not node:
            continue
        extra = {}
        if name == "wandb":
            extra = {
                "name": node.get("name") or f"{spec.name}-{datamodule.name}-s{cfg.seed}",
                "group": node.get("group") or _wandb_group(cfg),
                **wandb_resume_kwargs(cfg.get("ckpt_path")),
            }
            callbacks.append(WandbRunIdInCheckpoint())
        loggers.append(instantiate(node, **extra))
    return datamodule, model, callbacks, loggers


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python data (what metrics.json and W&B keep)."""
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))


def record_context(
    cfg: DictConfig, model: ImageClassifier, datamodule: ImageFolderDataModule, trainer: L.Trainer
) -> dict[str, Any]:
    """What a training run and the evaluation of a checkpoint both put in their run record:
    the model and data they ran, where, and with which config."""
    return {
        "model": model.arch,
        "dataset": datamodule.name,
        "seed": cfg.seed,
        "run_dir": Path(cfg.paths.output_dir),
        "input_size": model.input_size,
        "class_names": list(model.class_names),
        "skipped_images": len(getattr(datamodule, "skipped_images", ())),
        "parameter_counts": model.parameter_counts(),
        "device": str(trainer.strategy.root_device),
        "config": plain_config(cfg),
    }


def _hydra_runtime() -> Any | None:
    """Hydra's runtime config inside a Hydra job (or a composed one), else None."""
    return HydraConfig.get() if HydraConfig.initialized() else None


# A cost measured on the best network after the test, from a few preprocessed test images,
# joined to the run's costs in metrics.json; the commands pass one in (the .pte latency of
# cli/train.py lives in deploy/, which training does not import).
DeployCost = Callable[[torch.nn.Module, torch.Tensor], Mapping[str, Any]]


def _train_and_test(
    cfg: DictConfig,
    status: RunStatus,
    extra_callbacks: Sequence[Callback] = (),
    deploy_cost: DeployCost | None = None,
) -> RunRecord:
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    check_run_target(output_dir, cfg.get("ckpt_path"))
    saved = None
    if cfg.get("ckpt_path") is not None:
        # Read weights-only, its hyper-parameters checked as data, before anything else reads
        # it, so a bad file fails with its name.
        saved = read_checked_hparams(cfg.ckpt_path)
    silence_library_noise()
    L.seed_everything(cfg.seed, workers=True)

    datamodule, model, callbacks, loggers = build_components(cfg)
    callbacks += extra_callbacks
    if saved is not None:
        check_resume(Path(cfg.ckpt_path), saved, dict(model.hparams))
    # Checked: from here on the run writes into its folder.
    if process_rank() == 0:
        write_job_config(RunDir(output_dir), cfg, _hydra_runtime())
        write_split_files(output_dir, datamodule.manifest(), datamodule.class_indices())
    status.start(resumed_from=cfg.get("ckpt_path"))
    _multirun_safe_strategy(cfg)
    # `callbacks.progress_bar=null` (sweeps, studies) means no bar: left alone, Lightning adds
    # its default one, with every logged metric on it, wrapped over many lines of the log.
    show_bar = any(isinstance(callback, ProgressBar) for callback in callbacks)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        enable_progress_bar=cfg.trainer.get("enable_progress_bar", show_bar),
        plugins=[*(cfg.trainer.get("plugins") or []), RunFolderCheckpointIO()],
    )
    if cfg.get("compile", False):
        # In place (nn.Module.compile), so state-dict keys and checkpoints stay unchanged.
        model.net.compile()
    counts = model.parameter_counts()
    log.info(
        "Model %s at %d px: %s of %s parameters trainable.",
        cfg.model.net.arch,
        model.input_size,
        f"{counts['params_trainable']:,}",
        f"{counts['params_total']:,}",
    )
    for logger in loggers:
        if isinstance(logger, ProjectWandbLogger):
            logger.log_config(plain_config(cfg), dataset_facts(datamodule))
        else:
            logger.log_hyperparams(plain_config(cfg))

    train_time_s = 0.0
    if cfg.get("train", True):
        fit_started = time.perf_counter()
        try:
            trainer.fit(
                model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True
            )
        except SIGTERMException:
            # Lightning's own stop on SIGTERM (e.g. during validation): an exit status of 0.
            last = RunDir(output_dir).last_ckpt
            raise RunInterrupted(
                "SIGTERM", last if last.is_file() else None, "while training"
            ) from None
        # Earlier attempts' training time, as the checkpoint this attempt resumed recorded it.
        timer = next((c for c in callbacks if isinstance(c, TrainTime)), None)
        train_time_s = time.perf_counter() - fit_started + (timer.before if timer else 0.0)
    # The values the last epoch logged (from the CSV log, for a resume that had nothing left
    # to train), then what this process's training logged.
    fit_metrics = {
        **last_epoch_metrics(RunDir(output_dir).metrics_csv),
        **{k: float(v) for k, v in trainer.callback_metrics.items()},
    }

    # Kept before the evaluation: loading the best checkpoint restores its shorter history.
    epoch_confusions = list(getattr(model, "epoch_confusions", []))

    # The monitored checkpoint (best.ckpt), not LastCheckpoint (last.ckpt, no monitor).
    checkpoint = next(
        (c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor is not None), None
    )
    best_ckpt = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
    test_metrics: dict[str, float] = {}
    # A dataset without test/ (e.g. the car-colour MobileNetV3 recipe's train/ + val/) is
    # evaluated on val: every evaluation file is still written, and says which split it is.
    evaluated_split = "test" if datamodule.has_split("test") else "val"
    eval_loader = None
    if cfg.get("test", True) and not datamodule.has_split(evaluated_split):
        log.warning(
            "Dataset '%s' has neither a test nor a validation split: nothing to evaluate, so "
            "no per_class.csv, ROC or confusion matrix is written.",
            datamodule.name,
        )
    elif cfg.get("test", True):
        if best_ckpt is None:
            log.warning("No best checkpoint was saved; evaluating the weights as they are now.")
        if evaluated_split == "val":
            log.warning(
                "Dataset '%s' has no test split; evaluating the best checkpoint on the "
                "validation split instead (metrics.json says evaluated_split: val, and every "
                "evaluation file names the split). These are not held-out test scores.",
                datamodule.name,
            )
            datamodule.setup("validate")
            eval_loader = datamodule.val_dataloader()
            results = trainer.test(
                model,
                dataloaders=eval_loader,
                ckpt_path=best_ckpt,
                weights_only=True,
                verbose=False,  # Lightning's float32 table; the run's result table rounds
            )
        else:
            # verbose=False: Lightning's table prints raw float32 values (1.0000001192092896);
            # the run's result table prints the same scores rounded.
            results = trainer.test(
                model, datamodule=datamodule, ckpt_path=best_ckpt, weights_only=True, verbose=False
            )
            # ddp_spawn tests in its worker processes: this one may not have set the split up.
            datamodule.setup("test")
            eval_loader = datamodule.test_dataloader()
        test_metrics = {k: float(v) for k, v in results[0].items()} if results else {}

    run_files = RunDir(output_dir)
    curves = read_curves(run_files.metrics_csv)
    report = model.test_report if test_metrics else None
    cost = None
    if trainer.is_global_zero:  # one process measures speed and writes the files
        test_images = next(iter(eval_loader))[0] if report and eval_loader is not None else None
        model.to(trainer.strategy.root_device)
        cost = model_cost(
            model.net,
            model.input_size,
            test_images,
            cfg.get("timing"),
            test_batches=eval_loader if report else None,
        )
        if deploy_cost is not None and test_images is not None:
            # after trainer.test(ckpt_path=best) the module holds the best checkpoint's weights
            cost.update(deploy_cost(model.net, test_images))
    record = build_run_record(
        **record_context(cfg, model, datamodule, trainer),
        epochs=trainer.current_epoch,
        metrics={**fit_metrics, **test_metrics},
        train_time_s=train_time_s,
        best_ckpt=best_ckpt,
        best_epoch=best_epoch(curves),
        cost=cost,
        per_class=report.per_class if report else [],
        started=started,
        evaluated_split=evaluated_split if report else None,
    )
    if trainer.is_global_zero:
        epoch_rows = per_class_epoch_rows(epoch_confusions, list(datamodule.class_names))
        write_run_files(run_files, record, curves, report, epoch_confusions, epoch_rows)
        wandb_logger = find_wandb_logger(loggers)
        if wandb_logger is not None:
            predictions = (
                sample_predictions(model, eval_loader.dataset) if report and eval_loader else []
            )
            log_run_results(wandb_logger, record, report, output_dir, predictions, epoch_rows)
    return record


def run(
    cfg: DictConfig,
    status: RunStatus | None = None,
    extra_callbacks: Sequence[Callback] = (),
    deploy_cost: DeployCost | None = None,
) -> RunRecord:
    """Train (and test) one configuration; returns the record also saved as metrics.json.

    The run holds its folder's writer lock throughout (a second writer is refused with the
    holder's host and pid) and records its state in ``status.json`` (``status``: a sweep
    cell's record, else one is made). With ``sweep.resume=true`` a finished run directory is
    skipped and a checkpointed one continues from ``last.ckpt``, as does a cell interrupted
    by a signal. A signal stops the run with :class:`RunInterrupted` after saving
    ``last.ckpt``. The W&B run is finished in every case, also when it raises.
    ``extra_callbacks`` join the configured ones (a search trial's pruning callback); a trial
    its study's pruner stops ends as ``pruned`` and raises :class:`RunPruned`.
    ``deploy_cost`` adds a cost measured on the best network after the test (the .pte latency).
    """
    output_dir = Path(cfg.paths.output_dir)
    # A distributed run's other processes (Lightning's ddp starts them with this command)
    # leave the folder to rank 0, which writes every file.
    writer = process_rank() == 0
    with run_lock(output_dir) if writer else nullcontext():
        status = status or RunStatus(output_dir, write=writer)
        plan = plan_resume(output_dir, bool(cfg.get("sweep", {}).get("resume", False)))
        if plan.action == "skip":
            log.info("'%s' already holds a finished run (metrics.json); skipping it.", output_dir)
            return load_completed_record(output_dir)
        if plan.action == "resume" and cfg.get("ckpt_path") is None:
            log.info("Resuming '%s' from %s.", output_dir, plan.ckpt_path)
            with open_dict(cfg):
                cfg.ckpt_path = str(plan.ckpt_path)
        failed = True
        try:
            record = _train_and_test(cfg, status, extra_callbacks, deploy_cost)
            failed = False
        except RunPruned as stop:
            failed = False  # stopped by the search's pruner: a normal end
            status.end("pruned", pruned_epoch=stop.epoch + 1, reason=str(stop))
            raise
        except RunInterrupted as stop:
            status.end_after_error("interrupted", signal=stop.signal_name, where=stop.where)
            raise
        except Exception as error:
            status.end_after_error("failed", error=f"{type(error).__name__}: {error}")
            raise
        finally:
            finish_wandb(failed)
        status.end("completed")
        return record
