"""`mbv3 check`: the real CLI on a dataset with planted problems."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from .conftest import make_image_folder, run_module


@pytest.mark.slow
def test_check_reports_leakage_duplicates_counts_and_broken_files(tmp_path):
    root = make_image_folder(
        tmp_path / "data", classes=("apple", "banana"), splits={"train": 6, "val": 2, "test": 2}
    )
    # planted: a training photo copied into test (leakage), a duplicate inside train/apple,
    # an unreadable file, a greyscale image and two files without an image extension
    shutil.copy(root / "train" / "banana" / "003.jpg", root / "test" / "banana" / "copy.jpg")
    shutil.copy(root / "train" / "apple" / "000.jpg", root / "train" / "apple" / "000 (1).jpg")
    (root / "train" / "banana" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    Image.new("L", (60, 40), 128).save(root / "train" / "banana" / "grey.png")
    (root / "train" / "apple" / "notes.txt").write_text("not a photo")  # ignored by extension
    (root / "test" / "apple" / "photo.heic").write_bytes(b"\x00" * 16)
    out = tmp_path / "report"

    result = run_module(
        "mbv3_lightning.cli.check",
        "dataset=image_folder",
        f"dataset.root={root}",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads((out / "data_report.json").read_text())
    assert report["leakage"] == {"test-train": 1}
    leaked = next(group for group in report["duplicates"] if group["across_splits"])
    assert {f["path"] for f in leaked["files"]} == {"train/banana/003.jpg", "test/banana/copy.jpg"}
    within = next(group for group in report["duplicates"] if not group["across_splits"])
    assert {f["path"] for f in within["files"]} == {
        "train/apple/000.jpg",
        "train/apple/000 (1).jpg",
    }
    assert report["duplicate_groups"] == 2
    assert list(report["unreadable_files"]) == ["train/banana/broken.jpg"]
    assert report["ignored_files"] == ["test/apple/photo.heic", "train/apple/notes.txt"]
    assert "train/apple/notes.txt" in result.stdout
    assert report["splits"]["train"]["class_counts"] == {"apple": 7, "banana": 7}
    assert report["splits"]["test"]["class_counts"] == {"apple": 2, "banana": 3}
    assert report["splits"]["train"]["colour_modes"] == {"RGB": 13, "L": 1}
    assert report["splits"]["train"]["width"] == {"min": 32, "median": 32, "max": 60}
    assert report["imbalance_ratio"] == 1.0
    # the table names the leaked pair for whoever reads the terminal, not only the JSON
    assert "test/banana/copy.jpg" in result.stdout and "test-train: 1" in result.stdout
    assert not list(root.rglob("*.json"))  # nothing written next to the data
