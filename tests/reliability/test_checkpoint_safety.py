"""A checkpoint whose unpickling would run code is refused by every entry point, with torch's
pre-2.6 default (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), and the code never runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mbv3_lightning.cli.config import compose_config
from mbv3_lightning.deploy.export import export
from mbv3_lightning.deploy.page import check_model
from mbv3_lightning.deploy.predictor import load_predictor
from mbv3_lightning.models.safe_load import UnsafeCheckpointError
from mbv3_lightning.training.evaluate import evaluate
from mbv3_lightning.training.run import run
from tests.conftest import FAST_OVERRIDES


class _CreatesAFile:
    """Unpickling this calls ``open(marker, "w")``: the side effect a test can see."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A Lightning-looking checkpoint in a run folder, and the file loading it would create."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "code_ran"
    ckpt = tmp_path / "evil_run" / "checkpoints" / "evil.ckpt"
    ckpt.parent.mkdir(parents=True)
    torch.save(
        {
            "epoch": 0,
            "state_dict": {},
            "hyper_parameters": {"net": {"arch": "mobilenet_v3_small"}, "num_classes": 3},
            "payload": _CreatesAFile(marker),
        },
        ckpt,
    )
    return ckpt, marker


def _refused(error: BaseException, ckpt: Path, marker: Path) -> None:
    assert str(ckpt) in str(error)
    assert "Refusing to load" in str(error)
    assert not marker.exists(), "the checkpoint's code ran"


def test_the_variable_really_turns_the_unsafe_default_on(evil):
    """Guards the test itself: torch's default load would run the payload here."""
    ckpt, marker = evil
    torch.load(ckpt)  # what evaluate and resume relied on before
    assert marker.exists()


def test_train_resume_refuses(evil, tiny_dataset, compose_cfg):
    ckpt, marker = evil
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={tiny_dataset}",
            *FAST_OVERRIDES,
            f"ckpt_path={ckpt}",
        ]
    )
    with pytest.raises(UnsafeCheckpointError) as error:
        run(cfg)
    _refused(error.value, ckpt, marker)


def test_train_resume_command_refuses(evil, tiny_dataset, tmp_path):
    ckpt, marker = evil
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mbv3_lightning",
            "dataset=image_folder",
            f"dataset.root={tiny_dataset}",
            *FAST_OVERRIDES,
            f"ckpt_path={ckpt}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
    )
    assert result.returncode != 0
    assert "Refusing to load" in result.stderr and str(ckpt) in result.stderr
    assert not marker.exists()


def test_weights_path_refuses(evil, tiny_dataset, compose_cfg):
    ckpt, marker = evil
    cfg = compose_cfg(
        [
            "dataset=image_folder",
            f"dataset.root={tiny_dataset}",
            *FAST_OVERRIDES,
            f"model.net.weights_path={ckpt}",
        ]
    )
    # Hydra wraps the builder's error in an InstantiationException; the message is kept.
    with pytest.raises(Exception, match="Refusing to load") as error:
        run(cfg)
    _refused(error.value, ckpt, marker)


def test_evaluate_refuses(evil, tiny_dataset, tmp_path):
    ckpt, marker = evil
    cfg = compose_config(
        "evaluate",
        ["dataset=image_folder", f"dataset.root={tiny_dataset}", f"ckpt_path={ckpt}"],
        hydra_runtime=True,
        output_dir=tmp_path / "eval",
    )
    with pytest.raises(UnsafeCheckpointError) as error:
        evaluate(cfg)
    _refused(error.value, ckpt, marker)


def test_predict_refuses(evil):
    ckpt, marker = evil
    with pytest.raises(UnsafeCheckpointError) as error:
        load_predictor(ckpt)
    _refused(error.value, ckpt, marker)


def test_export_refuses(evil, tmp_path):
    ckpt, marker = evil
    cfg = compose_config(
        "export", [f"ckpt_path={ckpt}"], output_dir=tmp_path / "export", output_key="output_dir"
    )
    with pytest.raises(UnsafeCheckpointError) as error:
        export(cfg)
    _refused(error.value, ckpt, marker)


def test_app_refuses_before_the_server_starts(evil):
    ckpt, marker = evil
    with pytest.raises(SystemExit) as error:
        check_model({"ckpt_path": str(ckpt)})
    _refused(error.value, ckpt, marker)


def test_app_refuses_a_missing_checkpoint(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(SystemExit, match="does not exist") as error:
        check_model({"ckpt_path": str(missing)})
    assert str(missing) in str(error.value)
