"""The files beside a phone model: its metadata sidecar and the app's class file.

A ``.pte``, ``.tflite`` or ``.mlpackage`` carries no free-form metadata that every runtime
reads back, so, as for TorchScript, the :class:`ModelInfo` (classes, input size, mean/std,
preprocessing) goes into ``<model>.json`` beside it. ``labels.txt`` (one class name per
line, in output order) is the class file the Android and iOS app examples load.
"""

from __future__ import annotations

import json
from pathlib import Path

from mbv3_lightning.deploy.predictor import ModelInfo, torchscript_sidecar
from mbv3_lightning.runs.run_dir import write_atomic

LABELS_FILE = "labels.txt"


def sidecar_path(model_path: Path) -> Path:
    """``model.pte`` -> ``model.pte.json`` (the layout TorchScript exports already use)."""
    return torchscript_sidecar(model_path)


def write_sidecars(model_path: Path, info: ModelInfo) -> None:
    """``<model>.json`` and ``labels.txt`` beside ``model_path``, each complete or absent."""
    write_atomic(sidecar_path(model_path), json.dumps(info.to_metadata(), indent=1).encode())
    write_atomic(model_path.with_name(LABELS_FILE), ("\n".join(info.class_names) + "\n").encode())


def read_sidecar(model_path: Path) -> ModelInfo:
    """The checked :class:`ModelInfo` of a phone model, from its sidecar (data, not code)."""
    path = sidecar_path(model_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"'{model_path}' has no '{path.name}' beside it, so its classes and preprocessing "
            "are unknown. Copy the .json that `mbv3 export` wrote next to the model."
        )
    try:
        metadata = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"'{path}' is not readable JSON: {error}") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"'{path}' is not a JSON object of model metadata.")
    return ModelInfo.from_metadata(metadata, path)
