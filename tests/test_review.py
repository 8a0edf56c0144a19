"""Label review: planted mislabelled photos rise to the top of cleanlab's ranking."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from mbv3_lightning.deploy.review import ReviewRow, write_contact_sheet
from mbv3_lightning.resources import resource_path

from .conftest import FAST_OVERRIDES, run_module

PLANTED = 10


def _plant_mislabelled(root: Path) -> set[str]:
    """Copy one test photo of each class into the next class's test folder: real photos of
    one fruit filed under another. Returns the planted files' paths."""
    classes = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    planted = set()
    for i, name in enumerate(classes[:PLANTED]):
        source = sorted((root / "test" / name).iterdir())[0]
        wrong = classes[(i + 1) % len(classes)]
        target = root / "test" / wrong / f"planted_{name}{source.suffix}"
        shutil.copy(source, target)
        planted.add(str(target))
    return planted


@pytest.mark.slow
def test_review_ranks_planted_mislabelled_images_first(tmp_path, saved_figures):
    root = tmp_path / "fruits"
    shutil.copytree(resource_path("data/fruits360-mini"), root)
    planted = _plant_mislabelled(root)
    run_dir = tmp_path / "train"
    trained = run_module(
        "mbv3_lightning",
        f"dataset.root={root}",
        *FAST_OVERRIDES,
        "dataset.batch_size=32",
        # Briefly, at 48 px instead of the photos' 100: fruit colours and shapes still tell
        # the classes apart. A high BatchNorm momentum lets the running statistics catch up
        # within the few steps (as `model.net.bn_momentum` does for the other short runs).
        "model.input_size=48",
        "model.net.bn_momentum=0.3",
        "trainer.max_epochs=6",
        "test=false",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        timeout=2400,  # a loaded 2-core machine needs far longer than an idle one
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    ckpt = run_dir / "checkpoints" / "best.ckpt"

    review_dir = tmp_path / "review"
    result = run_module(
        "mbv3_lightning.cli.review",
        f"ckpt_path={ckpt}",
        f"dataset.root={root}",
        "split=test",
        "top=20",
        f"hydra.run.dir={review_dir}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(review_dir / "review.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 250 + PLANTED  # every test image, each once
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores)  # most suspicious (lowest label quality) first
    top = rows[:20]
    found = {r["path"] for r in top} & planted
    assert len(found) >= 0.8 * PLANTED, f"only {len(found)} planted images in the top 20"
    for row in (r for r in top if r["path"] in planted):
        path = Path(row["path"])
        assert row["given"] == path.parent.name  # the folder it was filed under
        # the photo's real class, which the model recognises
        assert row["predicted"] == path.stem.removeprefix("planted_")
    assert (review_dir / "review.png").stat().st_size > 10_000  # the contact sheet
    # the same sheet drawn again from review.csv: its real photos' captions collide nowhere
    reviewed = [
        ReviewRow(
            path=Path(r["path"]),
            given=r["given"],
            predicted=r["predicted"],
            confidence=float(r["confidence"]),
            given_probability=float(r["given_probability"]),
            score=float(r["score"]),
        )
        for r in top
    ]
    title = "mobilenet_v3_small on fruits360_mini, test split: the 20 labels most likely wrong"
    write_contact_sheet(reviewed, tmp_path / "review.png", f"{title} (cleanlab label quality)")
    assert not saved_figures.failures, saved_figures.failures
