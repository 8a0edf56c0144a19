"""The project's training defaults vs a tuned bare PyTorch loop, trained side by side on real data.

`python -m benchmarks.accuracy [project overrides] (--data DIR | --demo) [--epochs 2 4 12 30]
[--size 128] [--recalibration default|on|off|both] [--save-bare F | --bare-result F]`

``DIR`` holds ``train/<class>/*`` and ``val/<class>/*`` photos; ``--demo`` is the bundled demo
as ``python -m mbv3_lightning`` trains it (its validation images are a seeded 30% of
``train/``, which the bare loop then uses too; its own input size and batch size). Both sides
train MobileNetV3-Small from scratch with the same epochs, input size, batch size and seed and
are validated every epoch on the same images:

- the bare loop (:func:`bare_loop`): the plain script a user would write, the full-resolution
  files as torchvision's ``ImageFolder`` lists and loads them, RandomResizedCrop (scale 0.6-1)
  + flip, AdamW (lr 3e-3, weight decay 0.05), a one-cycle schedule, label smoothing 0.1,
  BatchNorm momentum 0.1, channels_last;
- the project (:func:`project_run`): ``mbv3_lightning.training.run.run`` on the real config,
  ``dataset=image_folder dataset.root=DIR`` (protocol ``kaggle``, the default: ``val/`` is the
  validation split as it is, nothing is carved out of ``train/``) with its defaults. Hydra
  overrides (before the options, or after ``--``) switch one factor at a time, e.g.
  ``model.label_smoothing=0.1``.
  ``--recalibration both`` trains it twice per budget, with and without the BatchNorm
  recalibration (``callbacks.bn_recalibration``), side by side against one bare-loop run.

``--epochs`` takes a list: every budget is a separate training of every side (the one-cycle
schedules of both sides are laid out over the whole budget, so a short run is not the start of
a long one). Each side reports its best and final validation accuracy and its wall time; the
results go to ``benchmarks/results/<date>-<host>-accuracy.json`` and ``.md`` (one entry per
dataset, budget and set of overrides, and one summary per dataset and set of overrides across
the budgets; a rerun replaces its own entries and keeps the others). These are long runs (many
minutes on a CPU), so they are not part of ``python -m benchmarks.run``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import fcntl
import json
import logging
import os
import random
import socket
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, models
from torchvision import transforms as T

from benchmarks.run import RESULTS_DIR, environment, to_markdown
from mbv3_lightning.cli.config import CONFIG_NAME, compose_config
from mbv3_lightning.data.workers import default_num_workers
from mbv3_lightning.models.registry import IMAGENET_MEAN, IMAGENET_STD
from mbv3_lightning.runs.files import read_run_curves
from mbv3_lightning.runs.run_dir import RunDir
from mbv3_lightning.training.run import resolve_input_size
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
# The project sides `--recalibration` trains: a label and the overrides that make it.
RECALIBRATION_OFF = ["callbacks.bn_recalibration=null"]
RECALIBRATION_SIDES = {
    "default": {"project": []},
    "on": {"project, recalibration on": []},
    "off": {"project, recalibration off": RECALIBRATION_OFF},
    "both": {
        "project, recalibration off": RECALIBRATION_OFF,
        "project, recalibration on": [],
    },
}


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


@dataclass(frozen=True)
class Split:
    """The photos both sides train and validate on: ``(path relative to root, label)``."""

    root: Path
    classes: list[str]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]


def folder_split(data: Path) -> Split:
    """``data/train`` and ``data/val`` as torchvision's ``ImageFolder`` scans them."""
    train, val = datasets.ImageFolder(data / "train"), datasets.ImageFolder(data / "val")
    if val.classes != train.classes:
        raise ValueError(
            f"'{data}/val' has classes {val.classes}, '{data}/train' has "
            f"{train.classes}; both splits need the same class folders."
        )

    def relative(samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
        return [(str(Path(path).relative_to(data)), label) for path, label in samples]

    return Split(data, train.classes, relative(train.samples), relative(val.samples))


def manifest_split(manifest: dict[str, Any]) -> Split:
    """The split a project run drew and saved (``split_manifest.json``): how the bare loop
    trains on the demo, whose validation images are a seeded share of ``train/``."""
    splits = manifest["splits"]
    return Split(
        Path(manifest["root"]),
        list(manifest["classes"]),
        [(path, int(label)) for path, label in splits["train"]],
        [(path, int(label)) for path, label in splits["val"]],
    )


class Photos(Dataset):
    """``(image, label)`` from a list of files, loaded as ``ImageFolder`` loads them."""

    def __init__(self, root: Path, samples: list[tuple[str, int]], transform: T.Compose) -> None:
        self.root, self.samples, self.transform = root, samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        return self.transform(datasets.folder.pil_loader(str(self.root / path))), label


def bare_loop(
    split: Split,
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
    train_set = Photos(split.root, split.train, train_tf)
    val_set = Photos(split.root, split.val, eval_tf)
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(
        train_set, batch_size, shuffle=True, num_workers=workers, generator=generator
    )
    val_loader = DataLoader(val_set, batch_size, num_workers=workers)
    net = bare_model(len(split.classes)).to(device)
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
        "val_images": [path for path, _ in split.val],
    }


def project_overrides(
    data: Path | None, *, epochs: int, size: int, batch_size: int, seed: int, device: str
) -> list[str]:
    """The command line a user types for this data (``None``: the demo as it is), with the
    shared epochs, size, batch and seed."""
    overrides = [f"trainer.max_epochs={epochs}", f"seed={seed}", "logger=csv"]
    if data is not None:
        overrides += [
            "dataset=image_folder",
            f"dataset.root={data}",
            "model=mobilenet_v3_small",
            f"model.input_size={size}",
            f"dataset.batch_size={batch_size}",
        ]
    # No test here: the comparison is on validation accuracy, which both sides measure.
    overrides.append("test=false")
    if device.startswith("cuda"):
        overrides.append("trainer.accelerator=gpu")
    return overrides


def demo_settings(seed: int) -> tuple[int, int]:
    """The demo's input size and batch size, as its config composes them."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(CONFIG_NAME, [f"seed={seed}"], hydra_runtime=True, output_dir=tmp)
    return resolve_input_size(cfg), int(cfg.dataset.batch_size)


def project_run(overrides: list[str], output_dir: Path) -> dict[str, Any]:
    """One real training run of the project: per-epoch validation accuracy, wall seconds, its
    split, and what the BatchNorm recalibration cost (batches and seconds, all validations)."""
    started = time.perf_counter()
    cfg = compose_config(CONFIG_NAME, overrides, hydra_runtime=True, output_dir=output_dir)
    record = train_run(cfg)
    wall_s = time.perf_counter() - started
    rows = [row for row in read_run_curves(output_dir) if "val/acc" in row]
    manifest = json.loads((output_dir / "split_manifest.json").read_text())
    recal_batches, recal_s = recalibration_cost(output_dir)
    return {
        "curve": [{"epoch": int(row["epoch"]), "val_acc": row["val/acc"]} for row in rows],
        "wall_s": wall_s,
        "train_s": record.timings.train_time_s,
        "recal_batches": recal_batches,
        "recal_s": recal_s,
        "split": manifest,
        "val_images": [path for path, _ in manifest["splits"]["val"]],
        "protocol": manifest["protocol"],
    }


def recalibration_cost(run_dir: Path) -> tuple[int, float]:
    """Batches and seconds the BatchNorm recalibration took over a run's validations, as its
    metrics.csv logged them (``val/bn_recal_batches``, ``val/bn_recal_s``); 0 when off."""
    with RunDir(run_dir).metrics_csv.open(newline="") as f:
        logged = [row for row in csv.DictReader(f) if row.get("val/bn_recal_s")]
    batches = sum(int(float(row["val/bn_recal_batches"])) for row in logged)
    return batches, sum(float(row["val/bn_recal_s"]) for row in logged)


def summarise(side: str, result: dict[str, Any]) -> dict[str, Any]:
    """One table row: best and final validation accuracy, the best epoch, wall time (and for
    the project, training time and the recalibration's share of it)."""
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
        row["recal_batches"] = result["recal_batches"]
        row["recal_s"] = round(result["recal_s"], 1)
        row["recal_share"] = round(result["recal_s"] / result["train_s"], 3)
    return row


def compare(
    data: Path | None,
    *,
    epochs: int,
    size: int,
    batch_size: int = 32,
    seed: int = 42,
    device: str = "cpu",
    workers: int | None = None,
    extra_overrides: Sequence[str] = (),
    sides: Mapping[str, Sequence[str]] | None = None,
    workdir: Path | None = None,
    bare: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the bare loop and every project side on ``data`` (``None``: the demo, whose
    ``size`` and ``batch_size`` are :func:`demo_settings`); the benchmark entry (goal, rows,
    curves) and the bare loop's result.

    ``sides``: project runs by label, each with its own overrides after ``extra_overrides``
    (default: one side, ``project``, as configured). The goal is judged on the side without
    overrides of its own (the project as a user gets it), else the first; every row says how
    far it is from the bare loop (``vs_bare``).

    ``bare``: a bare-loop result of the same data, epochs, size, batch and seed returned
    earlier (saved with ``--save-bare``, given back with ``--bare-result``), so several project
    settings are compared with one reference run instead of retraining the unchanged bare loop
    each time; the entry names where it came from.
    """
    data = data.resolve() if data is not None else None
    workers = default_num_workers() if workers is None else workers
    sides = dict(sides) if sides is not None else {"project": []}
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
    projects = {}
    for index, (label, side_overrides) in enumerate(sides.items()):
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            projects[label] = project_run(
                [*overrides, *side_overrides], Path(tmp) / f"project{index}"
            )
    if bare is None:
        # The demo's validation images are a seeded share of train/: the bare loop trains on
        # the split the project drew. A folder's train/ and val/ are read as a script would.
        drawn = next(iter(projects.values()))["split"]
        split = folder_split(data) if data else manifest_split(drawn)
        bare = bare_loop(split, **settings, device=device, workers=workers)
        bare["settings"] = settings
        bare["measured_at"] = dt.datetime.now().isoformat(timespec="seconds")
    for project in projects.values():
        _check_same_val_images(project, bare)
    rows = [summarise("bare loop", bare)]
    for label, project in projects.items():
        row = summarise(label, project)
        row["vs_bare"] = round(row["best_val_acc"] - rows[0]["best_val_acc"], 4)
        rows.append(row)
    judged = next((label for label, extra in sides.items() if not extra), next(iter(sides)))
    gap = next(row["vs_bare"] for row in rows if row["side"] == judged)
    by_epoch = {
        label: {row["epoch"]: row["val_acc"] for row in project["curve"]}
        for label, project in projects.items()
    }
    curves = [
        {
            "epoch": row["epoch"],
            "bare val_acc": round(row["val_acc"], 4),
            **{
                f"{label} val_acc": round(by_epoch[label].get(row["epoch"], float("nan")), 4)
                for label in projects
            },
        }
        for row in bare["curve"]
    ]
    label = " ".join(extra_overrides) or "defaults"
    entry = {
        "title": (
            f"Validation accuracy on {dataset_name(data)}, {' and '.join(projects)} ({label}) vs"
            f" bare loop, {epochs} epochs at {size} px, batch {batch_size}, seed {seed}"
        ),
        "goal": f"{judged}: best val acc >= bare loop best - {TOLERANCE}",
        "ratio": gap,  # project best minus bare best, in accuracy (0.01 = one point)
        "met": gap >= -TOLERANCE,
        "data": str(data) if data else "the demo (conf/dataset/fruits360_mini.yaml)",
        "project_overrides": overrides,
        "side_overrides": sides,
        "rows": rows,
        "tables": [{"title": "Validation accuracy per epoch", "rows": curves}],
        "bare_loop_measured_at": bare["measured_at"],
    }
    return entry, bare


def dataset_name(data: Path | None) -> str:
    return data.resolve().name if data is not None else "the demo (fruits360_mini)"


def _check_same_val_images(project: dict[str, Any], bare: dict[str, Any]) -> None:
    if sorted(project["val_images"]) == sorted(bare["val_images"]):
        return
    only_bare = sorted(set(bare["val_images"]) - set(project["val_images"]))
    only_project = sorted(set(project["val_images"]) - set(bare["val_images"]))
    raise RuntimeError(
        f"The two sides validated on different images (protocol {project['protocol']}): "
        f"{len(only_bare)} only in the bare loop (e.g. {only_bare[:3]}), "
        f"{len(only_project)} only in the project (e.g. {only_project[:3]}). "
        "Give a folder with train/ and val/ and do not override dataset.protocol."
    )


def summary_entry(
    data: Path | None, label: str, size: int, entries: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """One table across budgets: each side's best validation accuracy per number of epochs,
    the judged side's distance from the bare loop, and each project side's recalibration cost
    as a share of its training time."""
    rows = []
    for epochs, entry in sorted(entries.items()):
        row: dict[str, Any] = {"epochs": epochs}
        for side in entry["rows"]:
            row[side["side"]] = side["best_val_acc"]
        row["vs bare"] = entry["ratio"]
        row["met"] = entry["met"]
        for side in entry["rows"][1:]:
            if side["recal_batches"]:
                row[f"{side['side']}: recalibration s (share of training)"] = (
                    f"{side['recal_s']} ({side['recal_share']:.1%})"
                )
        rows.append(row)
    first = next(iter(entries.values()))
    return {
        "title": (
            f"Best validation accuracy on {dataset_name(data)} per budget ({label}), {size} px:"
            f" {first['goal']}"
        ),
        "goal": f"at every budget, {first['goal']}",
        "ratio": min(entry["ratio"] for entry in entries.values()),  # the worst budget's gap
        "met": all(entry["met"] for entry in entries.values()),
        "rows": rows,
    }


def save(entry: dict[str, Any], name: str, device: str, kind: str = "accuracy") -> Path:
    """Merge ``entry`` into today's ``kind`` results file; write its markdown beside it.

    The results folder is locked while the file is read and replaced, so comparisons of
    several datasets run side by side keep each other's entries; each file is written whole
    to a temporary file and renamed, so a kill leaves the previous version."""
    stem = f"{dt.date.today().isoformat()}-{socket.gethostname()}-{kind}"
    json_path = RESULTS_DIR / f"{stem}.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    folder = os.open(RESULTS_DIR, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        previous = json.loads(json_path.read_text())["benchmarks"] if json_path.exists() else {}
        results = {"environment": environment(device), "benchmarks": {**previous, name: entry}}
        _replace(json_path, json.dumps(results, indent=2))
        _replace(json_path.with_suffix(".md"), to_markdown(results))
    finally:
        os.close(folder)  # releases the lock
    return json_path


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of epochs, got {text}")
    return value


def saved_bare_results(path: Path) -> dict[int, dict[str, Any]]:
    """The bare-loop results ``--save-bare`` wrote, by number of epochs (a file of one result,
    as earlier versions wrote it, counts for its own budget)."""
    saved = json.loads(path.read_text())
    if "settings" in saved:
        return {int(saved["settings"]["epochs"]): saved}
    return {int(epochs): result for epochs, result in saved.items()}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", type=Path, help="folder with train/ and val/")
    where.add_argument(
        "--demo",
        action="store_true",
        help="the bundled demo as `python -m mbv3_lightning` runs it (its own size and batch)",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        nargs="+",
        default=[30],
        help="training budgets, e.g. `--epochs 2 4 12 30`: each one trains every side "
        "(give Hydra overrides before the options, or after `--`)",
    )
    parser.add_argument("--size", type=int, default=128, help="input size in pixels (--data only)")
    parser.add_argument("--batch-size", type=int, default=32, help="(--data only)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--workers", type=int, default=None, help="loader workers, both sides (default: auto)"
    )
    parser.add_argument(
        "--recalibration",
        choices=list(RECALIBRATION_SIDES),
        default="default",
        help="project side(s): as configured (default), with or without the BatchNorm "
        "recalibration, or both side by side",
    )
    parser.add_argument(
        "--save-bare", type=Path, default=None, help="also write the bare loop's results here"
    )
    parser.add_argument(
        "--bare-result",
        type=Path,
        default=None,
        help="reuse bare-loop results written by --save-bare instead of training them again",
    )
    parser.add_argument(
        "overrides", nargs="*", help="extra Hydra overrides for the project side only"
    )
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda given but torch sees no GPU")
    if len(set(args.epochs)) != len(args.epochs):
        parser.error(f"--epochs lists a budget twice: {args.epochs}")
    for split in ("train", "val"):
        if args.data is not None and not (args.data / split).is_dir():
            parser.error(
                f"'{args.data / split}' is not a folder: --data needs train/<class>/* and "
                "val/<class>/* (the same classes in both)"
            )
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    logging.basicConfig(level=logging.WARNING)
    size, batch_size = demo_settings(args.seed) if args.demo else (args.size, args.batch_size)
    saved_bare = saved_bare_results(args.bare_result) if args.bare_result else {}
    label = " ".join(args.overrides) or "defaults"
    if args.recalibration != "default":
        label += f", recalibration {args.recalibration}"
    entries: dict[int, dict[str, Any]] = {}
    bares: dict[int, dict[str, Any]] = {}
    path = RESULTS_DIR
    for epochs in args.epochs:
        started = time.perf_counter()
        entry, bares[epochs] = compare(
            args.data,
            epochs=epochs,
            size=size,
            batch_size=batch_size,
            seed=args.seed,
            device=args.device,
            workers=args.workers,
            extra_overrides=args.overrides,
            sides=RECALIBRATION_SIDES[args.recalibration],
            bare=saved_bare.get(epochs),
        )
        if args.save_bare:
            args.save_bare.write_text(json.dumps(bares, indent=1))
        entry["seconds"] = round(time.perf_counter() - started, 1)
        entry["measured_at"] = dt.datetime.now().isoformat(timespec="seconds")
        entries[epochs] = entry
        name = f"{dataset_name(args.data)} {size}px {epochs}ep: {label}"
        path = save(entry, name, args.device)
        for row in entry["rows"]:
            print(
                f"[accuracy] {epochs} epochs, {row['side']}: best {row['best_val_acc']:.4f} "
                f"(epoch {row['best_epoch']}), final {row['final_val_acc']:.4f}, "
                f"{row['wall_s']:.0f} s",
                flush=True,
            )
        verdict = "met" if entry["met"] else "missed"
        print(
            f"[accuracy] {epochs} epochs, project - bare (best): {entry['ratio']:+.4f} "
            f"({verdict}); wrote {path}",
            flush=True,
        )
    if len(entries) > 1:
        summary = summary_entry(args.data, label, size, entries)
        summary["seconds"] = sum(entry["seconds"] for entry in entries.values())
        path = save(summary, f"{dataset_name(args.data)} {size}px: {label}", args.device)
    return path


if __name__ == "__main__":
    main()
