"""A checkpoint's hyper-parameters are data: a config node hidden in them never runs.

The checkpoints here load fine with ``weights_only=True`` (plain dicts and tensors), so only
the way the project rebuilds objects from them stands between the file and its code: a nested
``{"_target_": "pathlib.Path.write_text", ...}`` that Hydra's ``instantiate`` would call.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from mbv3_lightning.cli.config import compose_config
from mbv3_lightning.cli.review import main as review_main
from mbv3_lightning.deploy.export import export
from mbv3_lightning.deploy.page import check_model
from mbv3_lightning.deploy.predictor import load_predictor
from mbv3_lightning.models.hparams import checked_hparams
from mbv3_lightning.models.safe_load import UnsafeCheckpointError
from mbv3_lightning.training.evaluate import evaluate
from mbv3_lightning.training.module import ImageClassifier
from mbv3_lightning.training.run import run
from tests.conftest import FAST_OVERRIDES


def _writes(marker: Path) -> dict[str, Any]:
    """The config node of the report: calling it writes ``marker``."""
    return {
        "_target_": "pathlib.Path.write_text",
        "_args_": [{"_target_": "pathlib.Path", "_args_": [str(marker)]}, "echo hi"],
    }


def _set(hparams: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for part in parents:
        hparams = hparams[part]
    hparams[last] = value


# Every node a checkpoint carries, each poisoned in turn.
POISONED_KEYS = [
    "net.dropout",
    "net.width_mult",
    "net._target_",
    "optimizer.lr",
    "optimizer._target_",
    "scheduler.pct_start",
    "scheduler._target_",
    "class_names",
    "label_smoothing",
    "_instantiator",
]


def _poison(trained: Path, folder: Path, key: str, marker: Path) -> Path:
    """A copy of the trained checkpoint in a run folder of its own, with ``key`` poisoned."""
    checkpoint = torch.load(trained, map_location="cpu", weights_only=True)
    hparams = copy.deepcopy(checkpoint["hyper_parameters"])
    if key.endswith("._target_"):
        value: Any = "pathlib.Path.write_text"
    elif key == "_instantiator":
        value = "pathlib.Path.touch"
    else:
        value = _writes(marker)
    _set(hparams, key, value)
    checkpoint["hyper_parameters"] = hparams
    path = folder / "checkpoints" / "poisoned.ckpt"
    path.parent.mkdir(parents=True)
    torch.save(checkpoint, path)
    torch.load(path, weights_only=True)  # the file itself is a clean weights-only pickle
    return path


@pytest.fixture(params=POISONED_KEYS)
def poisoned(request, trained_checkpoint: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    marker = tmp_path / "x.sh"
    ckpt = _poison(trained_checkpoint, tmp_path / "shared_run", request.param, marker)
    return ckpt, marker, request.param


def _refused(error: BaseException, ckpt: Path, marker: Path, key: str) -> None:
    message = str(error)
    assert "Refusing to load" in message and str(ckpt) in message, message
    assert key.split(".")[0] in message, message
    assert not marker.exists(), "the checkpoint's code ran"


def test_the_poisoned_node_really_runs_code_through_instantiate(trained_checkpoint, tmp_path):
    """Guards the test itself: what Hydra would do with the node the checkpoints carry."""
    from hydra.utils import instantiate

    marker = tmp_path / "x.sh"
    instantiate(_writes(marker))
    assert marker.read_text() == "echo hi"


def test_predict_refuses(poisoned):
    ckpt, marker, key = poisoned
    with pytest.raises(UnsafeCheckpointError) as error:
        load_predictor(ckpt)
    _refused(error.value, ckpt, marker, key)


def test_the_classifier_loader_refuses(poisoned):
    ckpt, marker, key = poisoned
    with pytest.raises(UnsafeCheckpointError) as error:
        ImageClassifier.load_from_checkpoint(ckpt)
    _refused(error.value, ckpt, marker, key)


def test_evaluate_refuses(poisoned, tiny_dataset, tmp_path):
    ckpt, marker, key = poisoned
    cfg = compose_config(
        "evaluate",
        ["dataset=image_folder", f"dataset.root={tiny_dataset}", f"ckpt_path={ckpt}"],
        hydra_runtime=True,
        output_dir=tmp_path / "eval",
    )
    with pytest.raises(UnsafeCheckpointError) as error:
        evaluate(cfg)
    _refused(error.value, ckpt, marker, key)


def test_export_refuses(poisoned, tmp_path):
    ckpt, marker, key = poisoned
    cfg = compose_config(
        "export", [f"ckpt_path={ckpt}"], output_dir=tmp_path / "export", output_key="output_dir"
    )
    with pytest.raises(UnsafeCheckpointError) as error:
        export(cfg)
    _refused(error.value, ckpt, marker, key)
    assert not (tmp_path / "export" / "model.onnx").exists()


def test_app_refuses_before_the_server_starts(poisoned):
    ckpt, marker, key = poisoned
    with pytest.raises(SystemExit) as error:
        check_model({"ckpt_path": str(ckpt)})
    _refused(error.value, ckpt, marker, key)


@pytest.mark.parametrize("key", ["net.dropout", "optimizer.lr"])
def test_review_refuses(key, trained_checkpoint, tiny_dataset, tmp_path):
    marker = tmp_path / "x.sh"
    ckpt = _poison(trained_checkpoint, tmp_path / "shared_run", key, marker)
    cfg = compose_config(
        "review",
        ["dataset=image_folder", f"dataset.root={tiny_dataset}", f"ckpt_path={ckpt}"],
        hydra_runtime=True,
        output_dir=tmp_path / "review",
    )
    with pytest.raises(UnsafeCheckpointError) as error:
        review_main.__wrapped__(cfg)  # the command's body, without Hydra's error report
    _refused(error.value, ckpt, marker, key)


@pytest.mark.parametrize("key", ["net.dropout", "scheduler.pct_start", "_instantiator"])
def test_resume_refuses(key, trained_checkpoint, tiny_dataset, compose_cfg, tmp_path):
    marker = tmp_path / "x.sh"
    ckpt = _poison(trained_checkpoint, tmp_path / "shared_run", key, marker)
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={tiny_dataset}",
            *FAST_OVERRIDES,
            "model.input_size=32",
            f"ckpt_path={ckpt}",
        ]
    )
    with pytest.raises(UnsafeCheckpointError) as error:
        run(cfg)
    _refused(error.value, ckpt, marker, key)


def test_weights_path_reads_tensors_only(trained_checkpoint, tiny_dataset, compose_cfg, tmp_path):
    """A new run from a poisoned checkpoint's weights takes its tensors and nothing else."""
    marker = tmp_path / "x.sh"
    ckpt = _poison(trained_checkpoint, tmp_path / "shared_run", "net.dropout", marker)
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={tiny_dataset}",
            *FAST_OVERRIDES,
            "model.input_size=32",
            "trainer.max_epochs=1",
            f"model.net.weights_path={ckpt}",
        ]
    )
    record = run(cfg)
    assert record.metrics["test/acc"] >= 0.0
    assert not marker.exists()


def test_a_clean_checkpoint_passes_and_keeps_every_value(trained_checkpoint):
    raw = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    checked = checked_hparams(raw["hyper_parameters"], trained_checkpoint)
    assert checked["net"]["arch"] == "mobilenet_v3_small"
    assert checked["optimizer"]["_target_"] == "torch.optim.AdamW"
    assert checked["optimizer"]["lr"] == pytest.approx(0.01)
    assert checked["num_classes"] == 3
    assert checked["class_names"] == ["apple", "banana", "cherry"]


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("torch.optim.lr_scheduler.StepLR", True),
        ("mbv3_lightning.training.optim.cosine_schedule", True),
        ("torch.optim.lr_scheduler.LambdaLR", True),
        ("torch.optim.Optimizer", False),  # not a scheduler
        ("os.system", False),
        ("torch.optim.lr_scheduler.math.cos", False),
    ],
)
def test_scheduler_allow_list(trained_checkpoint, target, allowed):
    raw = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    hparams = {**raw["hyper_parameters"], "scheduler": {"_target_": target, "_partial_": True}}
    if allowed:
        assert checked_hparams(hparams, "x.ckpt")["scheduler"]["_target_"] == target
    else:
        with pytest.raises(UnsafeCheckpointError, match=r"scheduler\._target_"):
            checked_hparams(hparams, "x.ckpt")
