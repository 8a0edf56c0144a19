"""Label review: rank every image of a split by how likely its label is wrong.

The TensorFlow retraining tutorial ends by reviewing the images a model gets wrong or is unsure
about, to find mislabelled data. Here a trained model's probabilities go to cleanlab's
label-quality scores (``cleanlab.rank.get_label_quality_scores``, self-confidence: the
probability the model gives the *given* label), so the ranking is a maintained, documented
method rather than a formula of this project. The lowest scores come first.

Scores are only trustworthy on images the model did not train on (val, test): a network
memorises the labels it was trained on, wrong ones included.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbv3_lightning.data.images import load_rgb
from mbv3_lightning.deploy.predictor import Predictor

REVIEW_COLUMNS = ("rank", "path", "given", "predicted", "confidence", "given_probability", "score")
# cleanlab's default ranking method; recorded in review.csv's header comment and the README.
SCORE_METHOD = "self_confidence"


@dataclass(frozen=True)
class ReviewRow:
    """One image: its given and predicted label, and cleanlab's label-quality score."""

    path: Path
    given: str
    predicted: str
    confidence: float  # probability of the predicted class
    given_probability: float  # probability of the given label
    score: float  # cleanlab label quality in [0, 1]: low = the label is likely wrong


def label_quality(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """cleanlab's label-quality score of every image (low = label likely wrong)."""
    from cleanlab.rank import get_label_quality_scores

    return get_label_quality_scores(labels, probabilities, method=SCORE_METHOD)


def review_samples(
    predictor: Predictor, samples: Sequence[tuple[Path, int]], batch_size: int = 32
) -> list[ReviewRow]:
    """Every ``(path, label)`` scored and sorted, most suspicious first."""
    if not samples:
        raise ValueError("No images to review.")
    names = predictor.info.class_names
    batches = []
    for start in range(0, len(samples), batch_size):
        images = [load_rgb(path) for path, _ in samples[start : start + batch_size]]
        batches.append(predictor.predict(images))
    probabilities = np.concatenate(batches)
    labels = np.array([label for _, label in samples])
    scores = label_quality(labels, probabilities)
    predicted = probabilities.argmax(axis=1)
    rows = [
        ReviewRow(
            path=path,
            given=names[label],
            predicted=names[int(predicted[i])],
            confidence=float(probabilities[i, predicted[i]]),
            given_probability=float(probabilities[i, label]),
            score=float(scores[i]),
        )
        for i, (path, label) in enumerate(samples)
    ]
    # Stable: equal scores keep the split's order, so the file is reproducible.
    return sorted(rows, key=lambda row: row.score)


def write_review_csv(rows: Sequence[ReviewRow], path: Path) -> None:
    """review.csv: one row per image, most suspicious first (rank 1)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(REVIEW_COLUMNS)
        for rank, row in enumerate(rows, start=1):
            writer.writerow(
                [
                    rank,
                    str(row.path),
                    row.given,
                    row.predicted,
                    f"{row.confidence:.6f}",
                    f"{row.given_probability:.6f}",
                    f"{row.score:.6f}",
                ]
            )


# Contact sheet layout: a column is 2.6 inches wide; an 8-point caption line holds about 34
# characters in it, so longer file and class names are shortened in the middle.
SHEET_COLUMNS = 5
COLUMN_INCHES = 2.6
CAPTION_CHARS = 34


def shorten(text: str, limit: int = CAPTION_CHARS) -> str:
    """``IMG_20240613_…_cover_000.jpg``: ``text`` cut in the middle to ``limit`` characters,
    so a caption keeps both a name's start and its end (the number, the suffix)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return f"{text[:head]}…{text[len(text) - (limit - 1 - head) :]}"


def caption(rank: int, row: ReviewRow) -> str:
    """Three short lines under one image: rank and file, the given label, the prediction."""
    predicted = f"{row.predicted} ({row.confidence:.0%})"
    return "\n".join(
        [
            shorten(f"#{rank} {row.path.name}"),
            shorten(f"given: {row.given}"),
            shorten(f"predicted: {predicted}"),
        ]
    )


def write_contact_sheet(rows: Sequence[ReviewRow], path: Path, title: str) -> None:
    """A grid of the given (most suspicious) images, each captioned with its rank, file,
    given and predicted label; red where they disagree. The layout engine places the title
    and every caption in space of its own, so nothing covers a caption."""
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("No images for the contact sheet.")
    columns = min(SHEET_COLUMNS, len(rows))
    lines = math.ceil(len(rows) / columns)
    width = COLUMN_INCHES * columns
    fig = Figure(figsize=(width, 2.9 * lines + 0.5), layout="constrained")
    axes = fig.subplots(lines, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for rank, (ax, row) in enumerate(zip(axes.flat, rows, strict=False), start=1):
        ax.imshow(load_rgb(row.path))
        colour = "tab:red" if row.given != row.predicted else "black"
        ax.set_title(caption(rank, row), fontsize=8, color=colour)
    # a 10-point title line holds about 12 characters per inch
    fig.suptitle(textwrap.fill(title, width=int(12 * width)), fontsize=10)
    fig.savefig(path, dpi=100)
