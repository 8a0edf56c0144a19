"""The project's training defaults vs a tuned bare PyTorch loop, trained side by side on real data.

`python -m benchmarks.accuracy --data DIR [--epochs 30] [--size 128]
[--save-bare F | --bare-result F] [project overrides]`

``DIR`` holds ``train/<class>/*`` and ``val/<class>/*`` photos. Both sides train
MobileNetV3-Small from scratch with the same epochs, input size, batch size and seed and are
validated every epoch on the same ``val/`` images:

- the bare loop (:func:`bare_loop`): the plain script a user would write, torchvision's
  ``ImageFolder`` over the full-resolution files, RandomResizedCrop (scale 0.6-1) + flip,
  AdamW (lr 3e-3, weight decay 0.05), a one-cycle schedule, label smoothing 0.1, BatchNorm
  momentum 0.1, channels_last;
- the project (:func:`project_run`): ``mbv3_lightning.training.run.run`` on the real config,
  ``dataset=image_folder dataset.root=DIR`` (protocol ``kaggle``, the default: ``val/`` is the
  validation split as it is, nothing is carved out of ``train/``) with its defaults. Overrides
  after the options switch one factor at a time, e.g. ``model.label_smoothing=0.1``.

Each side reports its best and final validation accuracy and its wall time; the results go to
``benchmarks/results/<date>-<host>-accuracy.json`` and ``.md`` (one entry per dataset and set
of overrides; a rerun replaces its own entry and keeps the others). These are long runs (many
minutes on a CPU), so they are not part of ``python -m benchmarks.run``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import random
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from torchvision import datasets, models
from torchvision import transforms as T

from benchmarks.run import RESULTS_DIR, environment, to_markdown
from mbv3_lightning.cli.config import CONFIG_NAME, compose_config
from mbv3_lightning.data.workers import default_num_workers
from mbv3_lightning.models.registry import IMAGENET_MEAN, IMAGENET_STD
from mbv3_lightning.runs.files import read_run_curves
from mbv3_lightning.training.run import run as train_run

# The bare recipe. Every value is the tuned script's own, not a project default.
CROP_SCALE = (0.6, 1.0)
LR = 3e-3
WEIGHT_DECAY = 0.05
LABEL_SMOOTHING = 0.1
BN_MOMENTUM = 0.1
EVAL_CROP_RATIO = 0.875  # eval: resize the short side to size / 0.875, centre-crop size
# "Within one point" of the bare loop's best validation accuracy counts as as strong.
TOLERANCE = 0.01


def bare_transforms(size: int) -> tuple[T.Compose, T.Compose]:
    """Training and evaluation transforms of the bare loop, on full-resolution PIL images."""
    normalize = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train = T.Compose([T.RandomResizedCrop(size, scale=CROP_SCALE), T.RandomHorizontalFlip()])
    evaluate = T.Compose([T.Resize(int(size / EVAL_CROP_RATIO)), T.CenterCrop(size)])
    return T.Compose([train, *normalize]), T.Compose([evaluate, *normalize])


def bare_model(num_classes: int) -> nn.Module:
    """torchvision's MobileNetV3-Small from scratch, BatchNorm momentum 0.1 (torchvision: 0.01)."""
    net = models.mobilenet_v3_small(num_classes=num_classes)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = BN_MOMENTUM
    return net.to(memory_format=torch.channels_last)


def bare_loop(
    data: Path,
    *,
    epochs: int,
    size: int,
    batch_size: int = 32,
    seed: int = 42,
    device: str = "cpu",
    workers: int = 0,
) -> dict[str, Any]:
    """Train and validate the bare recipe; per-epoch validation accuracy and wall seconds."""
    started = time.perf_counter()
    random.seed(seed)
    torch.manual_seed(seed)
    train_tf, eval_tf = bare_transforms(size)
    train_set = datasets.ImageFolder(data / "train", train_tf)
    val_set = datasets.ImageFolder(data / "val", eval_tf)
    if val_set.classes != train_set.classes:
        raise ValueError(
            f"'{data}/val' has classes {val_set.classes}, '{data}/train' has "
            f"{train_set.classes}; both splits need the same class folders."
        )
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        train_set, batch_size, shuffle=True, num_workers=workers, generator=generator
    )
    val_loader = DataLoader(val_set, batch_size, num_workers=workers)
    net = bare_model(len(train_set.classes)).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LR, total_steps=epochs * len(train_loader)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    curve = []
    for epoch in range(epochs):
        net.train()
        for images, labels in train_loader:
            images = images.to(device, memory_format=torch.channels_last)
            loss = criterion(net(images), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        net.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_loader:
                images = images.to(device, memory_format=torch.channels_last)
                correct += (net(images).argmax(1).cpu() == labels).sum().item()
        curve.append({"epoch": epoch, "val_acc": correct / len(val_set)})
    return {
        "curve": curve,
        "wall_s": time.perf_counter() - started,
        "val_images": [str(Path(path).relative_to(data)) for path, _ in val_set.samples],
    }


def project_overrides(
    data: Path, *, epochs: int, size: int, batch_size: int, seed: int, device: str
) -> list[str]:
    """The command line a user types for this data, with the shared epochs/size/batch/seed."""
    overrides = [
        "dataset=image_folder",
        f"dataset.root={data}",
        "model=mobilenet_v3_small",
        f"model.input_size={size}",
        f"trainer.max_epochs={epochs}",
        f"dataset.batch_size={batch_size}",
        f"seed={seed}",
        "logger=csv",
        # No test split here: the run would evaluate its best checkpoint on val once more,
        # which adds time and no number this comparison uses.
        "test=false",
    ]
    if device.startswith("cuda"):
        overrides.append("trainer.accelerator=gpu")
    return overrides


def project_run(overrides: list[str], output_dir: Path) -> dict[str, Any]:
    """One real training run of the project; per-epoch validation accuracy and wall seconds."""
    started = time.perf_counter()
    cfg = compose_config(CONFIG_NAME, overrides, hydra_runtime=True, output_dir=output_dir)
    record = train_run(cfg)
    wall_s = time.perf_counter() - started
    curve = [
        {"epoch": int(row["epoch"]), "val_acc": row["val/acc"]}
        for row in read_run_curves(output_dir)
        if "val/acc" in row
    ]
    manifest = json.loads((output_dir / "split_manifest.json").read_text())
    return {
        "curve": curve,
        "wall_s": wall_s,
        "train_s": record.timings.train_time_s,
        "val_images": [path for path, _ in manifest["splits"]["val"]],
        "protocol": manifest["protocol"],
    }


def summarise(side: str, result: dict[str, Any]) -> dict[str, Any]:
    """One table row: best and final validation accuracy, the best epoch, wall time."""
    accuracies = [row["val_acc"] for row in result["curve"]]
    best = max(accuracies)
    row = {
        "side": side,
        "best_val_acc": round(best, 4),
        "final_val_acc": round(accuracies[-1], 4),
        "best_epoch": accuracies.index(best),
        "epochs": len(accuracies),
        "val_images": len(result["val_images"]),
        "wall_s": round(result["wall_s"], 1),
    }
    if "train_s" in result:
        row["train_s"] = round(result["train_s"], 1)
    return row


def compare(
    data: Path,
    *,
    epochs: int,
    size: int,
    batch_size: int = 32,
    seed: int = 42,
    device: str = "cpu",
    workers: int | None = None,
    extra_overrides: Sequence[str] = (),
    workdir: Path | None = None,
    bare: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train both sides on ``data``; the benchmark entry (goal, rows, curves) and the bare
    loop's result.

    ``bare``: a bare-loop result of the same data, epochs, size, batch and seed returned
    earlier (saved with ``--save-bare``, given back with ``--bare-result``), so several project
    settings are compared with one reference run instead of retraining the unchanged bare loop
    each time; the entry names where it came from.
    """
    data = data.resolve()
    workers = default_num_workers() if workers is None else workers
    settings = {"epochs": epochs, "size": size, "batch_size": batch_size, "seed": seed}
    if bare is not None and bare.get("settings") != settings:
        raise ValueError(
            f"The saved bare-loop result was trained with {bare.get('settings')}, this "
            f"comparison uses {settings}; rerun without --bare-result."
        )
    overrides = project_overrides(
        data, epochs=epochs, size=size, batch_size=batch_size, seed=seed, device=device
    )
    overrides += [f"dataset.num_workers={workers}", *extra_overrides]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        project = project_run(overrides, Path(tmp) / "project")
    if bare is None:
        bare = bare_loop(data, **settings, device=device, workers=workers)
        bare["settings"] = settings
        bare["measured_at"] = dt.datetime.now().isoformat(timespec="seconds")
    if sorted(project["val_images"]) != sorted(bare["val_images"]):
        only_bare = sorted(set(bare["val_images"]) - set(project["val_images"]))
        only_project = sorted(set(project["val_images"]) - set(bare["val_images"]))
        raise RuntimeError(
            f"The two sides validated on different images (protocol {project['protocol']}): "
            f"{len(only_bare)} only in the bare loop (e.g. {only_bare[:3]}), "
            f"{len(only_project)} only in the project (e.g. {only_project[:3]}). "
            "Give a folder with train/ and val/ and do not override dataset.protocol."
        )
    rows = [summarise("bare loop", bare), summarise("project", project)]
    gap = round(rows[1]["best_val_acc"] - rows[0]["best_val_acc"], 4)
    project_by_epoch = {row["epoch"]: row["val_acc"] for row in project["curve"]}
    curves = [
        {
            "epoch": row["epoch"],
            "bare val_acc": round(row["val_acc"], 4),
            "project val_acc": round(project_by_epoch.get(row["epoch"], float("nan")), 4),
        }
        for row in bare["curve"]
    ]
    label = " ".join(extra_overrides) or "defaults"
    entry = {
        "title": (
            f"Validation accuracy on {data.name}, project ({label}) vs bare loop,"
            f" {epochs} epochs at {size} px, batch {batch_size}, seed {seed}"
        ),
        "goal": f"project best val acc >= bare loop best - {TOLERANCE}",
        "ratio": gap,  # project best minus bare best, in accuracy (0.01 = one point)
        "met": gap >= -TOLERANCE,
        "data": str(data),
        "project_overrides": overrides,
        "rows": rows,
        "tables": [{"title": "Validation accuracy per epoch", "rows": curves}],
        "bare_loop_measured_at": bare["measured_at"],
    }
    return entry, bare


def entry_name(data: Path, extra_overrides: Sequence[str], size: int, epochs: int) -> str:
    """A stable key per dataset, resolution, epochs and override set, so reruns replace theirs."""
    label = " ".join(extra_overrides) or "defaults"
    return f"{data.resolve().name} {size}px {epochs}ep: {label}"


def save(entry: dict[str, Any], name: str, device: str) -> Path:
    """Merge ``entry`` into today's accuracy results file; write its markdown beside it."""
    stem = f"{dt.date.today().isoformat()}-{socket.gethostname()}-accuracy"
    json_path = RESULTS_DIR / f"{stem}.json"
    previous = json.loads(json_path.read_text())["benchmarks"] if json_path.exists() else {}
    results = {
        "environment": environment(device),
        "benchmarks": {**previous, name: entry},
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2))
    json_path.with_suffix(".md").write_text(to_markdown(results))
    return json_path


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--size", type=int, default=128, help="input size in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--workers", type=int, default=None, help="loader workers, both sides (default: auto)"
    )
    parser.add_argument(
        "--save-bare", type=Path, default=None, help="also write the bare loop's result here"
    )
    parser.add_argument(
        "--bare-result",
        type=Path,
        default=None,
        help="reuse a bare-loop result written by --save-bare instead of training it again",
    )
    parser.add_argument(
        "overrides", nargs="*", help="extra Hydra overrides for the project side only"
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda given but torch sees no GPU")
    for split in ("train", "val"):
        if not (args.data / split).is_dir():
            parser.error(
                f"'{args.data / split}' is not a folder: --data needs train/<class>/* and "
                "val/<class>/* (the same classes in both)"
            )
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    entry, bare = compare(
        args.data,
        epochs=args.epochs,
        size=args.size,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        workers=args.workers,
        extra_overrides=args.overrides,
        bare=json.loads(args.bare_result.read_text()) if args.bare_result else None,
    )
    if args.save_bare:
        args.save_bare.write_text(json.dumps(bare, indent=1))
    entry["seconds"] = round(time.perf_counter() - started, 1)
    entry["measured_at"] = dt.datetime.now().isoformat(timespec="seconds")
    path = save(entry, entry_name(args.data, args.overrides, args.size, args.epochs), args.device)
    for row in entry["rows"]:
        print(
            f"[accuracy] {row['side']}: best {row['best_val_acc']:.4f} (epoch "
            f"{row['best_epoch']}), final {row['final_val_acc']:.4f}, {row['wall_s']:.0f} s"
        )
    verdict = "met" if entry["met"] else "missed"
    print(f"[accuracy] project - bare (best): {entry['ratio']:+.4f} ({verdict}); wrote {path}")
    return path


if __name__ == "__main__":
    main()
