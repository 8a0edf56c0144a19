"""`mbv3 predict ckpt_path=<ckpt|onnx|pt> inputs=<file|folder|glob> top_k=5`.

Classifies images with a trained model: a table on stdout and ``predictions.csv`` in the
run directory. Unreadable files are reported and skipped, never silently dropped.
"""

from __future__ import annotations

import csv
import glob
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from rich.progress import track
from rich.table import Table

from mbv3_lightning.data.images import UNREADABLE_IMAGE_ERRORS, is_image_file, load_rgb
from mbv3_lightning.deploy.predictor import Predictor, top_k

log = logging.getLogger(__name__)

# What PIL raises for truncated, corrupt or non-image files.


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one input file, or why it could not be read."""

    path: Path
    classes: list[tuple[str, float]]
    error: str = ""


def resolve_inputs(inputs: str) -> list[Path]:
    """One file, every image under a folder (recursively), or the files a glob matches."""
    path = Path(inputs).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
    else:
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(
            f"`inputs={inputs}` matched no image files. Give an image, a folder of images or a "
            "quoted glob such as `inputs='photos/**/*.jpg'`."
        )
    return files


def _read_images(paths: Sequence[Path]) -> tuple[list[tuple[Path, Image.Image]], list[Prediction]]:
    readable, failed = [], []
    for path in paths:
        try:
            readable.append((path, load_rgb(path)))
        except UNREADABLE_IMAGE_ERRORS as error:
            log.warning("Skipping '%s': not a readable image (%s).", path, error)
            failed.append(Prediction(path, [], error=f"unreadable image: {error}"))
    return readable, failed


def _batches(paths: Sequence[Path], batch_size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(paths), batch_size):
        yield paths[start : start + batch_size]


def predict_paths(
    predictor: Predictor,
    paths: Sequence[Path],
    k: int = 5,
    batch_size: int = 32,
    show_progress: bool = False,
) -> list[Prediction]:
    """Top-``k`` predictions for every path, in input order; unreadable files carry an error."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    batches: Iterable[Sequence[Path]] = _batches(paths, batch_size)
    if show_progress:
        total = -(-len(paths) // batch_size)
        batches = track(batches, total=total, description="Predicting", transient=True)
    by_path: dict[Path, Prediction] = {}
    for batch in batches:
        readable, failed = _read_images(batch)
        by_path.update((p.path, p) for p in failed)
        if readable:
            probabilities = predictor.predict([image for _, image in readable])
            for (path, _), row in zip(readable, probabilities, strict=True):
                by_path[path] = Prediction(path, top_k(row, predictor.info.class_names, k))
    return [by_path[path] for path in paths]


def write_predictions_csv(predictions: Sequence[Prediction], path: Path, k: int) -> None:
    """``path, class_1, probability_1, ..., error``; written whole or not at all."""
    header = ["path"]
    for rank in range(1, k + 1):
        header += [f"class_{rank}", f"probability_{rank}"]
    header.append("error")
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for prediction in predictions:
            cells: list[str] = [str(prediction.path)]
            for rank in range(k):
                if rank < len(prediction.classes):
                    name, probability = prediction.classes[rank]
                    cells += [name, f"{probability:.6f}"]
                else:
                    cells += ["", ""]
            writer.writerow([*cells, prediction.error])
    partial.replace(path)


def render_predictions(predictions: Sequence[Prediction], title: str) -> Table:
    """One row per image: the top class in bold, then the runners-up."""
    table = Table(title=title)
    table.add_column("image", overflow="fold")
    table.add_column("prediction", style="bold")
    table.add_column("probability", justify="right")
    table.add_column("next most likely")
    for prediction in predictions:
        if prediction.error:
            table.add_row(str(prediction.path), "[red]skipped[/red]", "", prediction.error)
            continue
        (name, probability), *others = prediction.classes
        runners_up = ", ".join(f"{n} {p:.1%}" for n, p in others)
        table.add_row(str(prediction.path), name, f"{probability:.1%}", runners_up)
    return table
