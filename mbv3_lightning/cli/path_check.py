"""Compose-time checks of the files and folders a command reads, so a wrong path is one line
and exit status 2 before Hydra makes a run folder (not a traceback from deep inside the job,
next to a folder holding only ``.hydra/`` and a log).

A key is checked wherever the composed config has it and it is set; it means the same thing in
every command that has it (``ckpt_path`` is the model to predict with, export, evaluate or
review, and the checkpoint a training run resumes from).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mbv3_lightning.data.images import IMAGE_EXTENSIONS

# What `ckpt_path` takes, by command (the config's name); the others take a checkpoint.
CHECKPOINT_HINTS = {
    "train": "to resume, give the run's <run dir>/checkpoints/last.ckpt",
    "predict": "give a checkpoint (<run dir>/checkpoints/*.ckpt), an export (*.onnx, *.pt, *.pte, "
    "*.tflite) or a state dict (best.pth, with classes= and arch=)",
    "evaluate": "give a checkpoint (<run dir>/checkpoints/*.ckpt) or an export (*.onnx, *.pt, "
    "*.pte, *.tflite)",
}
CHECKPOINT_HINTS["review"] = CHECKPOINT_HINTS["app"] = CHECKPOINT_HINTS["predict"]
CHECKPOINT_HINT = "give a checkpoint (<run dir>/checkpoints/*.ckpt)"
# key -> what to give instead, for keys that must name a readable file (ckpt_path: above)
FILE_KEYS: dict[str, str] = {
    "ckpt_path": CHECKPOINT_HINT,
    "classes": "give the class file of these weights, e.g. <run dir>/class_indices.json",
    "model.net.weights_path": "give a state dict or a checkpoint of this network",
}
# keys that must name a readable folder
FOLDER_KEYS: dict[str, str] = {
    "calibration_dir": "give a folder of images",
    "test_dir": "give a folder of class folders (<dir>/<class>/*.jpg)",
}
# keys that name images: one file, a folder searched recursively, or a glob
IMAGE_KEYS = ("inputs", "images")


def _value(cfg: DictConfig, key: str) -> Any:
    """The key's value, or None where it is absent, unset (null, ???) or does not resolve."""
    try:
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=True)
    except Exception:  # ??? (reported as a missing value), or an interpolation that does not
        return None  # resolve here (e.g. ${hydra:...})
    return value


def _shown(key: str, value: str) -> str:
    """``key='value'``, with the absolute path where the value is relative (the working
    directory is part of what went wrong)."""
    path = Path(value).expanduser()
    where = "" if path.is_absolute() else f" (in {Path.cwd()})"
    return f"{key}='{value}'{where}"


def _denied(path: Path) -> bool:
    """The file cannot be read, or the folder cannot be listed, by this process."""
    access = os.R_OK | (os.X_OK if path.is_dir() else 0)
    return not os.access(path, access)


def file_problem(key: str, value: str, hint: str) -> str | None:
    """Why ``value`` is no readable file, or None."""
    return _path_problem(key, value, hint, folder=False)


def folder_problem(key: str, value: str, hint: str) -> str | None:
    """Why ``value`` is no readable folder, or None."""
    return _path_problem(key, value, hint, folder=True)


def _path_problem(key: str, value: str, hint: str, *, folder: bool) -> str | None:
    path = Path(value).expanduser()
    if path.is_dir() if folder else path.is_file():
        return (
            f"{_shown(key, value)} is not readable (permission denied)" if _denied(path) else None
        )
    if not path.exists():
        state = "does not exist"
    else:
        state = "is a file, not a folder" if folder else "is a folder, not a file"
    return f"{_shown(key, value)} {state}; {hint}"


def _finds_an_image(value: str) -> bool:
    """``value`` is an image file, a folder holding one (at any depth) or a glob matching a
    file: the first match is enough, where the command then lists them all."""
    path = Path(value).expanduser()
    if path.is_file():
        return True
    if path.is_dir():
        return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.rglob("*"))
    return any(Path(p).is_file() for p in glob.iglob(str(path), recursive=True))


def images_problem(key: str, value: str) -> str | None:
    """Why ``value`` (an image, a folder searched recursively or a glob) names no image."""
    path = Path(value).expanduser()
    if path.exists() and _denied(path):
        return f"{_shown(key, value)} is not readable (permission denied)"
    if _finds_an_image(value):
        return None
    state = "matched no image files" if path.exists() or glob.has_magic(value) else "does not exist"
    return (
        f"{_shown(key, value)} {state}; give an image, a folder of images or a quoted glob "
        f"such as {key}='photos/**/*.jpg'"
    )


def _dataset_layout(target: str) -> str | None:
    """The folder layout a dataset class expects (imported only to explain an error)."""
    from hydra.utils import get_class

    try:
        layout = getattr(get_class(target), "expected_layout", None)
    except Exception:  # a class path that does not import: the job reports it
        return None
    return str(layout) if layout else None


def dataset_problem(cfg: DictConfig) -> str | None:
    """Why ``dataset.root`` is no readable folder, where nothing would make it: a dataset that
    writes its stand-in (``dataset.stand_in``) or downloads itself (``dataset.download``) is
    left to the job."""
    root = _value(cfg, "dataset.root")
    if root is None or _value(cfg, "dataset.stand_in") or _value(cfg, "dataset.download"):
        return None
    path = Path(str(root)).expanduser()
    if path.is_dir():
        denied = f"{_shown('dataset.root', str(root))} is not readable (permission denied)"
        return denied if _denied(path) else None
    layout = _dataset_layout(str(_value(cfg, "dataset._target_")))
    laid_out = f" laid out as {layout}" if layout else ""
    handle = _value(cfg, "dataset.kaggle_handle")
    if handle:
        hint = (
            f"point it at a local copy of {_value(cfg, 'dataset.name')}{laid_out}, or download "
            f"it from Kaggle ('{handle}') with dataset.download=true"
        )
    else:
        hint = f"point it at a folder of images{laid_out}"
    state = "is a file, not a folder" if path.exists() else "does not exist"
    return f"{_shown('dataset.root', str(root))} {state}; {hint}"


def path_errors(cfg: DictConfig, command: str) -> list[str]:
    """One line per file or folder ``cfg``, the config of ``command``, names that the command
    could not read."""
    hints = {**FILE_KEYS, "ckpt_path": CHECKPOINT_HINTS.get(command, CHECKPOINT_HINT)}
    problems = []
    for key, hint in hints.items():
        value = _value(cfg, key)
        if value is not None:
            problems.append(file_problem(key, str(value), hint))
    for key, hint in FOLDER_KEYS.items():
        value = _value(cfg, key)
        if value is not None:
            problems.append(folder_problem(key, str(value), hint))
    for key in IMAGE_KEYS:
        value = _value(cfg, key)
        if value is not None:
            problems.append(images_problem(key, str(value)))
    problems.append(dataset_problem(cfg))
    return [problem for problem in problems if problem is not None]
