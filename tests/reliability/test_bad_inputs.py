"""One bad file never stops a job, and a nonsense setting fails at composition, naming the key."""

from __future__ import annotations

import csv
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mbv3_lightning.cli.config_check import ConfigError, check_config
from mbv3_lightning.data.images import UNREADABLE_IMAGE_ERRORS, UnreadableImageError, load_rgb
from mbv3_lightning.deploy.predictor import load_predictor
from mbv3_lightning.training.run import build_components
from tests.conftest import FAST_OVERRIDES, make_image_folder, run_module


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path: Path, side: int = 14000) -> Path:
    """A tiny PNG whose header claims ``side`` x ``side`` pixels: PIL's decompression-bomb
    check refuses it on open (more than twice Image.MAX_IMAGE_PIXELS)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    row = zlib.compress(b"\0" * (side + 1))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", row)
        + _png_chunk(b"IEND", b"")
    )
    return path


def test_the_bomb_is_a_bomb(tmp_path):
    bomb = write_bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 100_000
    with pytest.raises(UnreadableImageError, match="DecompressionBombError") as error:
        load_rgb(bomb)
    assert str(bomb) in str(error.value)
    assert isinstance(error.value.__cause__, Image.DecompressionBombError)


def test_predict_skips_a_decompression_bomb_and_writes_every_row(trained_checkpoint, tmp_path):
    inputs = make_image_folder(tmp_path / "photos", splits={"": 2})
    bomb = write_bomb_png(inputs / "bomb.png")
    result = run_module(
        "mbv3_lightning.cli.predict",
        f"ckpt_path={trained_checkpoint}",
        f"inputs={inputs}",
        f"hydra.run.dir={tmp_path / 'out'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        rows = {row["path"]: row for row in csv.DictReader(f)}
    assert len(rows) == 7
    assert (
        "DecompressionBombError" in rows[str(bomb)]["error"] or "pixels" in rows[str(bomb)]["error"]
    )
    assert all(row["class_1"] for path, row in rows.items() if path != str(bomb))


def test_the_app_upload_handler_catches_a_bomb(tmp_path):
    """The page catches UNREADABLE_IMAGE_ERRORS around load_rgb of the uploaded bytes."""
    data = write_bomb_png(tmp_path / "bomb.png").read_bytes()
    with pytest.raises(UNREADABLE_IMAGE_ERRORS):
        load_rgb(io.BytesIO(data))


def _undecodable_name(folder: Path) -> Path:
    """Rename ``folder``'s first image to a name that is not valid UTF-8."""
    first = sorted(folder.iterdir())[0]
    target = os.path.join(os.fsencode(folder), b"\xff\xfe-photo.jpg")
    os.rename(first, target)
    return Path(os.fsdecode(target))


def test_training_scan_skips_a_name_that_is_not_utf8(compose_cfg, tmp_path, caplog):
    root = make_image_folder(tmp_path / "data")
    odd = _undecodable_name(root / "train" / "apple")
    cfg = compose_cfg(["dataset=image_folder", f"dataset.root={root}", *FAST_OVERRIDES])
    datamodule, *_ = build_components(cfg)
    datamodule.setup("fit")
    train_files = [path for path, _ in datamodule.samples("train") + datamodule.samples("val")]
    assert odd not in train_files and len(train_files) == 29
    assert ascii(str(odd)) in caplog.text  # the warning names the file


def test_data_check_finishes_with_a_name_that_is_not_utf8(tmp_path):
    root = make_image_folder(tmp_path / "data")
    _undecodable_name(root / "train" / "apple")
    # the report table prints the name as it is on disk: read the output leniently
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mbv3_lightning.cli.check",
            "dataset=image_folder",
            f"dataset.root={root}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not valid UTF-8" in result.stderr + result.stdout


def test_a_garbage_onnx_file_is_named(tmp_path):
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ValueError, match="not a readable ONNX model") as error:
        load_predictor(garbage)
    assert str(garbage) in str(error.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=0", "trainer.max_epochs=0 trains nothing"),
        ("model.input_size=7", "model.input_size=7 is too small for mobilenet_v3_small"),
        ("model.net.width_mult=0", "model.net.width_mult=0 must be > 0"),
        ("optimizer.lr=abc", "optimizer.lr='abc' must be a number"),
        ("dataset.batch_size=eight", "dataset.batch_size='eight' must be a number"),
    ],
)
def test_nonsense_settings_fail_at_composition(compose_cfg, override, message):
    with pytest.raises(ConfigError, match="Invalid configuration") as error:
        check_config(compose_cfg([override]))
    assert message in str(error.value)


def test_alexnet_minimum_comes_from_the_registry(compose_cfg):
    with pytest.raises(ConfigError, match="at least 63 px"):
        check_config(compose_cfg(["model=alexnet", "model.input_size=32"]))
    check_config(compose_cfg(["model=alexnet", "model.input_size=64"]))  # accepted


def test_the_command_stops_before_creating_a_run(tmp_path):
    result = run_module("mbv3_lightning", "trainer.max_epochs=0", cwd=tmp_path)
    assert result.returncode != 0 and "trainer.max_epochs=0 trains nothing" in result.stderr
    assert not list((tmp_path / "outputs").rglob("metrics.json"))


def test_one_image_per_class_is_an_error(compose_cfg, tmp_path):
    root = make_image_folder(tmp_path / "data", splits={"train": 1, "test": 1})
    cfg = compose_cfg(["dataset=image_folder", f"dataset.root={root}", *FAST_OVERRIDES])
    with pytest.raises(ValueError, match="fewer than 2 images") as error:
        datamodule, *_ = build_components(cfg)
        datamodule.setup("fit")
    assert "apple" in str(error.value)
