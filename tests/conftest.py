"""Shared fixtures: tiny real image folders on disk and real Hydra composition."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from omegaconf import DictConfig
from PIL import Image

from mbv3_lightning.cli.config import CONFIG_NAME, compose_config
from mbv3_lightning.runs.record import RunRecord

from .figure_check import SavedFigures, check_every_savefig

# Subprocesses (`python -m mbv3_lightning ...`) must import this checkout, not whichever copy
# happens to be installed.
REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
)


def _import_absl_bound_to_the_real_stderr() -> None:
    """absl's log handler (absl comes with LiteRT, the [tflite] extra) writes to whatever
    ``sys.stderr`` is when absl is imported, and closes that stream when a later logging set-up
    (Hydra's, in an in-process command) shuts the handler down, unless it is ``sys.stderr``
    then. Imported during a test, that stream is pytest's capture file, and every later test
    of the process fails with "I/O operation on closed file". Imported here, bound to the
    process's own stderr, it is never closed."""
    from importlib.util import find_spec

    if find_spec("absl") is None:
        return
    captured, sys.stderr = sys.stderr, sys.__stderr__
    try:
        import absl.logging  # noqa: F401
    finally:
        sys.stderr = captured


_import_absl_bound_to_the_real_stderr()


# Distinct colours make the tiny classes learnable, so accuracy assertions mean something.
CLASS_COLOURS = [
    (220, 40, 40),
    (40, 200, 60),
    (50, 70, 230),
    (230, 210, 40),
    (160, 60, 200),
    (40, 210, 220),
]

# Overrides that keep test runs small and quiet on a 2-core CPU.
FAST_OVERRIDES = [
    "trainer.accelerator=cpu",
    "dataset.num_workers=0",
    "dataset.batch_size=8",
    "dataset.eval_batch_size=16",
    "callbacks.progress_bar=null",
]


def write_image(path: Path, colour: Sequence[int], size: int = 32, seed: int = 0) -> Path:
    """A noisy, solid-colour RGB image; the format follows the file suffix."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size, size, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def make_image_folder(
    root: Path,
    classes: Iterable[str] = ("apple", "banana", "cherry"),
    splits: dict[str, int] | None = None,
    size: int = 32,
    suffix: str = ".jpg",
) -> Path:
    """``root/<split>/<class>/<i>.jpg`` with ``splits[split]`` images per class."""
    splits = splits if splits is not None else {"train": 10, "test": 4}
    for c, name in enumerate(classes):
        for split, count in splits.items():
            base = root / split if split else root
            for i in range(count):
                # crc32, not hash(): str hashes change between processes, and so would the
                # images, the training runs and every accuracy a test asserts on.
                seed = zlib.crc32(f"{split}/{c}/{i}".encode())
                write_image(base / name / f"{i:03d}{suffix}", CLASS_COLOURS[c], size, seed)
    return root


def run_module(
    module: str, *args: str, cwd: Path, timeout: float = 900
) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in ``cwd``, as a user types it; output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """Three colour classes, 10 train and 4 test images each, 32x32 JPEG."""
    return make_image_folder(tmp_path / "tiny")


def assert_scored_every_test_image(record: RunRecord | Mapping[str, Any], n_test: int) -> None:
    """The test stage scored all ``n_test`` images: the per-class supports add up to them and
    top-1 accuracy is a whole number of them (a partial or double-counted test breaks both).
    ``record``: a run's record, or its metrics.json as read from the file."""
    if not isinstance(record, RunRecord):
        record = RunRecord.from_json(record)
    assert sum(row["support"] for row in record.per_class) == n_test
    correct = record.metrics["test/acc"] * n_test
    assert abs(correct - round(correct)) < 1e-4, correct


# A log record on the console: Hydra's "[time][logger][INFO] - ..." or Lightning's own
# "INFO: ..." (its handler, when it has one); the commands keep these in their log files.
LOG_LINE = re.compile(r"^(\[[\d\-: ,]+\]\[[\w.]+\]\[(INFO|DEBUG)\]|INFO: )")


def log_lines(console: str) -> list[str]:
    """The INFO and DEBUG log lines in a command's console output (none is expected)."""
    return [line for line in console.splitlines() if LOG_LINE.match(line)]


def compose_train_config(overrides: Sequence[str], output_dir: Path) -> DictConfig:
    """Compose the real `conf/train.yaml` with overrides, as `python -m mbv3_lightning` would.

    Hydra's runtime config is registered (``${hydra:...}`` resolves) and its global state is
    left clear, so fixtures of any scope can call this.
    """
    return compose_config(CONFIG_NAME, overrides, hydra_runtime=True, output_dir=output_dir)


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """`compose_train_config` writing into this test's temporary directory by default."""

    def _compose(overrides: Sequence[str] = (), output_dir: Path | None = None) -> DictConfig:
        return compose_train_config(overrides, output_dir or tmp_path / "run")

    return _compose


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> SavedFigures:
    """Every figure saved during the test, checked for collisions just before it is written
    (tests/figure_check.py): ``saved_figures.failures`` names each figure that has any."""
    return check_every_savefig(monkeypatch)


@pytest.fixture(autouse=True)
def _scan_cache_in_tmp(tmp_path_factory, monkeypatch) -> None:
    """Image-check results are cached under the test session's temp dir, not ~/.cache."""
    monkeypatch.setenv("MBV3_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mbv3_cache"))


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best checkpoint of a mobilenet_v3_small that learned three colour classes at 32 px.

    Trained once per session for the predict, export and web page tests; its run directory
    holds the split_manifest.json that export reads parity and calibration images from.
    """
    from mbv3_lightning.training.run import run

    root = make_image_folder(tmp_path_factory.mktemp("colours"), splits={"train": 16, "test": 4})
    overrides = [
        "dataset=image_folder",
        f"dataset.root={root}",
        *FAST_OVERRIDES,
        "model.input_size=32",
        "trainer.max_epochs=6",
        "optimizer.lr=0.01",
        "model.net.bn_momentum=0.3",
        "dataset.scale=[0.8,1.0]",
    ]
    record = run(compose_train_config(overrides, tmp_path_factory.mktemp("trained_run")))
    assert record.metrics["test/acc"] >= 0.9, "the fixture model must have learned"
    return Path(record.identity.best_ckpt)


def write_recipe_files(ckpt: Path, folder: Path) -> tuple[Path, Path]:
    """A trained checkpoint saved as the car-colour MobileNetV3 recipe saves its model:
    ``best.pth``, the network's plain state dict, and ``class_indices.json`` as
    ``{"0": "<name>", ...}``."""
    import json

    import torch

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = {
        k.removeprefix("net."): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith("net.")
    }
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "best.pth")
    names = checkpoint["hyper_parameters"]["class_names"]
    classes = folder / "class_indices.json"
    classes.write_text(json.dumps({str(i): name for i, name in enumerate(names)}))
    return folder / "best.pth", classes


def evaluate_exported(model_path: Path, ckpt: Path, output_dir: Path) -> Any:
    """The RunRecord of `mbv3 evaluate ckpt_path=<export>` on the fixture's dataset, through
    the command's own wrapping of the file (cli.evaluate.exported_network) and the shared
    test loop."""
    import json

    from mbv3_lightning.cli.evaluate import exported_network
    from mbv3_lightning.runs.run_dir import RunDir
    from mbv3_lightning.training.evaluate import evaluate

    root = json.loads(RunDir.of_checkpoint(ckpt).split_manifest.read_text())["root"]
    overrides = [
        f"ckpt_path={model_path}",
        "dataset=image_folder",
        f"dataset.root={root}",
        "dataset.num_workers=0",
        "trainer.accelerator=cpu",
        "timing.repeats=2",
        "timing.batch_repeats=1",
    ]
    cfg = compose_config("evaluate", overrides, hydra_runtime=True, output_dir=output_dir)
    return evaluate(cfg, exported_network(str(model_path)))
