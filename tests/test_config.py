"""The Hydra configuration composes and config mistakes give actionable errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hydra.errors import InstantiationException

from mbv3_lightning.models.registry import list_models
from mbv3_lightning.resources import resource_path
from mbv3_lightning.training.run import resolve_input_size, run

from .conftest import FAST_OVERRIDES, run_module

MODEL_CONFIGS = sorted(p.stem for p in (resource_path("conf") / "model").glob("*.yaml"))


def test_the_default_config_trains_on_the_bundled_photos_at_their_size(compose_cfg):
    cfg = compose_cfg()
    assert Path(cfg.dataset.root, "train", "apple_10").is_dir()  # found from any folder
    assert resolve_input_size(cfg) == 100  # the demo trains at its images' native size


def test_the_registry_and_conf_model_list_the_same_architectures(compose_cfg):
    # Both ways: a registered architecture without a config cannot be chosen with `model=`,
    # and a config naming an unregistered one fails only when a run starts.
    configured = {compose_cfg([f"model={name}"]).model.net.arch for name in MODEL_CONFIGS}
    assert configured == set(list_models())
    # each entry has a config of its own name (variants such as inception_v3_noaux may add more)
    assert set(list_models()) <= set(MODEL_CONFIGS)


def test_model_input_size_overrides_dataset_hint(compose_cfg):
    assert resolve_input_size(compose_cfg(["model.input_size=128"])) == 128
    assert resolve_input_size(compose_cfg(["dataset.input_size=null"])) == 224


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_module("mbv3_lightning", *args, cwd=cwd, timeout=300)


def test_unknown_model_group_lists_the_choices(tmp_path):
    result = _cli("model=nope", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'model/nope'" in result.stderr
    assert "mobilenet_v3_small" in result.stderr and "mobilenet_v3_large" in result.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.ckpt"))


def test_unknown_architecture_lists_registered_models(compose_cfg, tiny_dataset):
    cfg = compose_cfg(["model.net.arch=resnet9000", *FAST_OVERRIDES])
    with pytest.raises(ValueError, match=r"Unknown model architecture 'resnet9000'.*mobilenet_v3"):
        run(cfg)


def test_missing_dataset_root_is_named(tmp_path):
    result = _cli("dataset=image_folder", "debug=fast", cwd=tmp_path)
    assert result.returncode != 0
    assert "dataset.root" in result.stderr


def test_wrong_type_is_explained(compose_cfg, tiny_dataset):
    cfg = compose_cfg(
        ["dataset=image_folder", f"dataset.root={tiny_dataset}", "dataset.batch_size=many"]
    )
    with pytest.raises(InstantiationException, match="batch_size must be a positive integer"):
        run(cfg)


def test_missing_dataset_folder_names_the_expected_layout(compose_cfg, tmp_path):
    cfg = compose_cfg(["dataset=image_folder", f"dataset.root={tmp_path / 'nowhere'}"])
    with pytest.raises(FileNotFoundError, match=r"does not exist.*train/<class>.*dataset\.root="):
        run(cfg)
