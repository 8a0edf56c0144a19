"""Hostile inputs the package already handles well, kept handled: each case has a test here or
is covered by the test named below, so this module is the index of every reliability case.

Covered elsewhere (not repeated here):

- missing dataset root, unset: covered by tests/test_config.py::test_missing_dataset_root_is_named;
  the folder layout and the fix: covered by
  tests/test_config.py::test_missing_dataset_folder_names_the_expected_layout
- train/test class sets that do not match: covered by
  tests/test_image_folder.py::test_class_only_in_test_split_is_an_error (a class only in test is
  an error naming it) and
  tests/test_datasets.py::test_val_split_missing_a_class_is_an_error_test_split_a_warning
- truncated JPEG, CMYK JPEG, 1x1 image, a 12-megapixel image: covered by
  tests/test_bad_images.py::test_training_skips_broken_files_by_name_and_uses_the_odd_ones
  (training skips the broken files by name and trains on the odd ones),
  tests/test_bad_images.py::test_truncated_jpeg_that_opens_lazily_is_caught,
  tests/test_image_folder.py::test_every_colour_mode_loads_as_rgb and
  tests/test_predict.py::test_unreadable_files_are_reported_and_skipped
- a typo in an override through `mbv3 train` (a suggestion, nothing runs): covered by
  tests/test_cli.py::test_mistyped_key_gets_a_suggestion_and_nothing_runs; an unknown model
  group (`model=mobilenet_v33`) lists the choices: covered by
  tests/test_config.py::test_unknown_model_group_lists_the_choices
- kill -9 mid-epoch (not marked complete, the documented resume ends like an unbroken run):
  covered by
  tests/reliability/test_checkpoints_resume.py::test_killed_mid_epoch_2_and_resumed_ends_like_an_unbroken_run
- a failing sweep cell (recorded; the other cells finish): covered by
  tests/test_sweep.py::test_failing_cell_is_recorded_and_the_others_complete and
  tests/test_launchers.py::test_joblib_runs_cells_in_parallel_and_records_failures
- weights_only loading in predict and export (a code-running checkpoint is refused): covered by
  tests/reliability/test_checkpoint_safety.py::test_predict_refuses and
  tests/reliability/test_checkpoint_safety.py::test_export_refuses (and every other entry point
  in that module)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from mbv3_lightning.runs.run_dir import run_dir_for
from mbv3_lightning.training.run import build_components, run
from tests.conftest import FAST_OVERRIDES, make_image_folder, run_module


def _dataset_overrides(root: Path, *extra: str) -> list[str]:
    return ["dataset=image_folder", f"dataset.root={root}", *FAST_OVERRIDES, *extra]


def test_a_missing_dataset_root_names_the_path_and_writes_no_results(compose_cfg, tmp_path):
    missing = tmp_path / "no_such_dataset"
    out = tmp_path / "run"
    cfg = compose_cfg(_dataset_overrides(missing), out)
    with pytest.raises(FileNotFoundError) as error:
        run(cfg)
    assert str(missing) in str(error.value) and "dataset.root=" in str(error.value)
    assert not (out / "metrics.json").exists() and not (out / "checkpoints").exists()


def test_an_empty_class_folder_is_named_with_its_split(compose_cfg, tmp_path):
    root = make_image_folder(tmp_path / "data")
    (root / "train" / "durian").mkdir()  # the class folder was created, the copy never ran
    with pytest.raises(ValueError, match="without images") as error:
        datamodule, *_ = build_components(compose_cfg(_dataset_overrides(root)))
        datamodule.setup("fit")
    assert "['durian']" in str(error.value) and str(root / "train") in str(error.value)


def test_symlink_loops_in_the_dataset_neither_hang_nor_add_classes(compose_cfg, tmp_path, caplog):
    root = make_image_folder(tmp_path / "data")
    os.symlink("..", root / "train" / "apple" / "up")  # inside a class, back to the split
    os.symlink("self", root / "train" / "banana" / "self.jpg")  # a link to itself (ELOOP)
    os.symlink(root, root / "train" / "cherry" / "to_root")  # inside a class, to the root
    os.symlink(root / "train", root / "train" / "looped")  # a "class folder" that is the split
    os.symlink(root, root / "loop")  # beside the splits, to the root
    datamodule, *_ = build_components(compose_cfg(_dataset_overrides(root)))
    datamodule.setup("fit")
    assert datamodule.class_keys == ["apple", "banana", "cherry"]
    fit = datamodule.samples("train") + datamodule.samples("val")
    test = datamodule.samples("test")
    # every real image exactly once, none reached through a link
    assert len(fit) == 30 and len(test) == 12
    assert len({path for path, _ in fit}) == 30
    assert not any({"up", "to_root", "looped", "loop"} & set(path.parts) for path, _ in fit + test)
    assert str(root / "train" / "looped") in caplog.text  # the skipped link is named


def test_a_huge_but_legal_image_is_scanned_and_trained_on(compose_cfg, tmp_path):
    """90 megapixels: above PIL's bomb warning (Image.MAX_IMAGE_PIXELS) and below its error,
    so a legal photo; the scan keeps it and the epoch decodes it."""
    root = make_image_folder(tmp_path / "data", splits={"train": 6, "test": 2})
    huge = root / "train" / "apple" / "huge.jpg"
    side = 9500
    assert Image.MAX_IMAGE_PIXELS < side * side < 2 * Image.MAX_IMAGE_PIXELS
    Image.new("RGB", (side, side), (220, 40, 40)).save(huge, quality=50)
    out = tmp_path / "run"
    cfg = compose_cfg(_dataset_overrides(root, "model.input_size=32", "trainer.max_epochs=1"), out)
    record = run(cfg)
    assert record.timings.epochs == 1 and record.data.skipped_images == 0
    manifest = json.loads((out / "split_manifest.json").read_text())
    used = {path for split in manifest["splits"].values() for path, _ in split}
    assert "train/apple/huge.jpg" in used
    assert (out / "metrics.json").is_file()


def test_a_mistyped_key_on_the_train_command_is_named_and_nothing_runs(tmp_path):
    result = run_module("mbv3_lightning", "trainer.max_epoch=3", cwd=tmp_path, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "Could not override 'trainer.max_epoch'" in result.stderr
    assert "full_key: trainer.max_epoch" in result.stderr
    assert not (tmp_path / "outputs").exists()


def _epoch(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]


@pytest.mark.slow
def test_ctrl_c_mid_epoch_stops_cleanly_and_the_run_resumes_in_its_folder(tmp_path):
    """SIGINT in epoch 1 of 2: Lightning shuts down and exits 1 without a traceback; the run
    folder keeps epoch 0's last.ckpt, is not marked complete, and the documented resume
    command finishes it in the same folder."""
    root = make_image_folder(tmp_path / "data")
    marker = tmp_path / "paused"
    run_dir = tmp_path / "run"
    args = _dataset_overrides(
        root,
        "model.input_size=32",
        "trainer.max_epochs=2",
        "dataset.batch_size=4",
        # holds the process still at batch 1 of epoch 1, so the signal lands mid-epoch
        "+callbacks.pause._target_=tests.reliability.pause.PauseOnce",
        "+callbacks.pause.epoch=1",
        "+callbacks.pause.batch=1",
        f"+callbacks.pause.marker={marker}",
    )
    command = [sys.executable, "-m", "mbv3_lightning", *args]
    proc = subprocess.Popen(
        [*command, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 900
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never reached epoch 1"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = stdout + stderr
    assert proc.returncode == 1, output[-3000:]
    assert "Traceback" not in output
    assert "Detected KeyboardInterrupt" in (run_dir / "train.log").read_text()
    last = run_dir / "checkpoints" / "last.ckpt"
    assert _epoch(last) == 0  # the last completed epoch, loadable weights-only
    assert not (run_dir / "metrics.json").exists()  # not passed off as a finished run
    assert Path(run_dir_for(str(last), str(tmp_path / "outputs" / "new"))) == run_dir

    # The documented resume command: only the checkpoint, no hydra.run.dir.
    resumed = subprocess.run(
        [*command, f"ckpt_path={last}"], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (tmp_path / "outputs").exists(), "the resume must continue in the same folder"
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["epochs"] == 2 and _epoch(last) == 1
