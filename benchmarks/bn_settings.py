"""Which BatchNorm recalibration settings to default to: how many batches, which transform.

`python -m benchmarks.bn_settings [overrides] [--epochs 2 4 12] [--batches 1 2 4 8 all]
[--name demo]`

The recalibration (``callbacks.bn_recalibration``) leaves training untouched: its batches are
drawn with the training's random generators saved and restored, so a run with it trains the
weights a run without it trains (``tests/test_bn_recalibration.py`` checks this), and the two
differ only in the statistics each validation and the test use. This study uses that: per
budget it trains once without the callback, keeps every epoch's weights, and evaluates every
setting on them with the callback's own functions (:func:`calibration_loader` inside
:func:`seeded_rng`, :func:`estimate_statistics`): validation accuracy per epoch, the best
epoch (the one best.ckpt would hold), the test accuracy of that epoch, and the seconds one
re-estimate takes (loading its images and the forward passes). ``stale`` is the run without
recalibration. One training per budget instead of one per setting.

Results: ``benchmarks/results/<date>-<host>-bn-settings.json`` and ``.md``, rewritten after
every budget.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.accuracy import save
from mbv3_lightning.cli.config import CONFIG_NAME, compose_config
from mbv3_lightning.data.image_folder import CALIBRATION_TRANSFORMS
from mbv3_lightning.data.random_state import seeded_rng
from mbv3_lightning.models.batchnorm import estimate_statistics, recalibrated_layers
from mbv3_lightning.training.bn_recalibration import calibration_loader
from mbv3_lightning.training.module import ImageClassifier
from mbv3_lightning.training.run import build_components
from mbv3_lightning.training.run import run as train_run

STALE = "stale (no recalibration)"
ALL = 10**6  # "all": more batches than any training split here makes


def train_keeping_epochs(overrides: list[str], output_dir: Path) -> list[Path]:
    """A real run without recalibration that also saves every epoch's weights."""
    keep = [
        "callbacks.bn_recalibration=null",
        "+callbacks.every_epoch._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"+callbacks.every_epoch.dirpath={output_dir / 'epochs'}",
        "+callbacks.every_epoch.filename='{epoch}'",
        "+callbacks.every_epoch.save_top_k=-1",
        "callbacks.progress_bar=null",
        "test=false",
    ]
    cfg = compose_config(
        CONFIG_NAME, [*overrides, *keep], hydra_runtime=True, output_dir=output_dir
    )
    train_run(cfg)
    return sorted(
        (output_dir / "epochs").glob("epoch=*.ckpt"), key=lambda p: int(p.stem.split("=")[1])
    )


def _batches(loader: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images, targets) for images, targets in loader]


@torch.no_grad()
def accuracy(net: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    net.eval()
    correct = sum(int((net(x).argmax(1) == y).sum()) for x, y in batches)
    return correct / sum(len(y) for _, y in batches)


def recalibrate(model: ImageClassifier, batches: list) -> None:
    """What the callback does before a validation, on batches drawn as it draws them."""
    estimate_statistics(
        recalibrated_layers(model),
        batches,
        lambda batch: model(batch[0].contiguous(memory_format=torch.channels_last)),
    )


def _label(transform: str, count: int) -> str:
    return f"{transform}, {'all' if count == ALL else count} batches"


def study_budget(overrides: list[str], epochs: int, counts: Sequence[int], seed: int) -> dict:
    """Train once for ``epochs``; every setting's per-epoch validation accuracy, best epoch,
    its test accuracy and the cost of one re-estimate."""
    run_overrides = [*overrides, f"trainer.max_epochs={epochs}", f"seed={seed}"]
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ckpts = train_keeping_epochs(run_overrides, Path(tmp) / "run")
        train_s = time.perf_counter() - started
        cfg = compose_config(CONFIG_NAME, run_overrides, hydra_runtime=True, output_dir=tmp)
        datamodule, *_ = build_components(cfg)
        datamodule.num_workers = 0
        datamodule.setup("fit")
        cl = torch.channels_last
        val = [(x.contiguous(memory_format=cl), y) for x, y in datamodule.val_dataloader()]
        test = (
            [(x.contiguous(memory_format=cl), y) for x, y in datamodule.test_dataloader()]
            if datamodule.has_split("test")
            else None
        )
        # The callback's batches: the same images and augmentations at every validation.
        calibration: dict[str, list | None] = {STALE: None}
        load_s: dict[str, float] = {STALE: 0.0}
        for transform in CALIBRATION_TRANSFORMS:
            for count in counts:
                name = _label(transform, count)
                started = time.perf_counter()
                with seeded_rng(seed):
                    calibration[name] = _batches(
                        calibration_loader(
                            datamodule.calibration_dataset(transform),
                            batch_size=datamodule.batch_size,
                            num_batches=count,
                            seed=seed,
                        )
                    )
                load_s[name] = time.perf_counter() - started
        curves: dict[str, list[float]] = {name: [] for name in calibration}
        forward_s: dict[str, float] = dict.fromkeys(calibration, 0.0)
        states = []
        for ckpt in ckpts:
            model = ImageClassifier.load_from_checkpoint(ckpt)
            model.net.to(memory_format=cl)
            states.append({k: v.clone() for k, v in model.state_dict().items()})
            for name, batches in calibration.items():
                model.load_state_dict(states[-1])
                model.eval()  # as in validation, where the callback runs
                if batches is not None:
                    started = time.perf_counter()
                    recalibrate(model, batches)
                    forward_s[name] += time.perf_counter() - started
                curves[name].append(accuracy(model, val))
        rows = []
        for name, batches in calibration.items():
            vals = curves[name]
            best = vals.index(max(vals))  # the first best, as ModelCheckpoint keeps it
            row: dict[str, Any] = {
                "epochs": epochs,
                "setting": name,
                "images": sum(len(y) for _, y in batches) if batches else 0,
                "best_val_acc": round(vals[best], 4),
                "best_epoch": best,
                "final_val_acc": round(vals[-1], 4),
                "recal_s": round(load_s[name] + forward_s[name] / len(ckpts), 3),
                "train_s": round(train_s, 1),
            }
            if test is not None:
                model.load_state_dict(states[best])
                model.eval()
                if batches is not None:
                    recalibrate(model, batches)
                row["test_acc_of_best"] = round(accuracy(model, test), 4)
            rows.append(row)
    return {
        "rows": rows,
        "curves": [
            {"epochs": epochs, "setting": name, **{str(i): round(v, 4) for i, v in enumerate(c)}}
            for name, c in curves.items()
        ],
    }


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[2, 4, 12])
    parser.add_argument(
        "--batches",
        nargs="+",
        default=["1", "2", "4", "8", "all"],
        help="batch counts to compare ('all': every full batch of the training split)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--name", default="demo", help="this study's entry in the results")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the training run")
    args = parser.parse_args(argv)
    counts = [ALL if b == "all" else int(b) for b in args.batches]
    label = " ".join(args.overrides) or "the demo"
    rows: list[dict] = []
    curves: list[dict] = []
    started = time.perf_counter()
    path = Path()
    for epochs in args.epochs:
        result = study_budget(list(args.overrides), epochs, counts, args.seed)
        rows += result["rows"]
        curves += result["curves"]
        for row in result["rows"]:
            print(row, flush=True)
        entry = {
            "title": f"BatchNorm recalibration settings: {args.name} ({label})",
            "goal": "the setting with the best validation accuracy at every budget, at a bounded"
            " cost",
            "ratio": "see the rows",
            "met": None,
            "seconds": round(time.perf_counter() - started, 1),
            "rows": rows,
            "tables": [{"title": "Validation accuracy per epoch", "rows": curves}],
        }
        path = save(entry, args.name, "cpu", kind="bn-settings")
    return path


if __name__ == "__main__":
    main()
