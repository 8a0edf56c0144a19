"""Small stand-ins of the paper's three datasets in their real Kaggle layouts, written where
``experiment=paper_mbv3_smoke`` looks for them (``dataset.stand_in=true``) when they are missing.

The MobileNetV3 image-classification paper's datasets are Kaggle downloads of hundreds of
megabytes; these stand-ins are read by the same DataModules the same way:

- ``fruits360/fruits-360/Training/<class>/`` and ``Test/<class>/``: a subset of the bundled
  Fruits-360 photos (``data/fruits360-mini``), re-laid as in the Kaggle archive;
- ``monkeys10/training/training/n0..n9/``, ``validation/validation/n0..n9/`` and
  ``monkey_labels.txt`` in Kaggle's format (the common names of the paper's Table V);
- ``birds/train/<species>/`` and ``test/<species>/``: 16 species, unbalanced, fewer than 10
  training images each, as the paper describes its bird set.

Monkey and bird images are generated JPEG files (a class-specific colour and shape on
noise, 4:3 like photos), so the runs can learn something and every figure has data.
"""

from __future__ import annotations

import logging
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mbv3_lightning.resources import resource_path

log = logging.getLogger(__name__)

# Folder id, Latin name and common name as Kaggle's monkey_labels.txt lists them.
MONKEYS = (
    ("n0", "alouatta_palliata", "mantled_howler"),
    ("n1", "erythrocebus_patas", "patas_monkey"),
    ("n2", "cacajao_calvus", "bald_uakari"),
    ("n3", "macaca_fuscata", "japanese_macaque"),
    ("n4", "cebuella_pygmea", "pygmy_marmoset"),
    ("n5", "cebus_capucinus", "white_headed_capuchin"),
    ("n6", "mico_argentatus", "silvery_marmoset"),
    ("n7", "saimiri_sciureus", "common_squirrel_monkey"),
    ("n8", "aotus_nigriceps", "black_headed_night_monkey"),
    ("n9", "trachypithecus_johnii", "nilgiri_langur"),
)
BIRDS = (
    "american_robin", "bald_eagle", "barn_owl", "blue_jay", "cardinal", "crow", "flamingo",
    "goldfinch", "hummingbird", "kingfisher", "magpie", "ostrich", "peacock", "pelican",
    "puffin", "toucan",
)  # fmt: skip
DEFAULTS = {"fruits_train": 12, "fruits_test": 5, "monkeys_train": 12, "monkeys_val": 4}


def synthetic_photo(path: Path, class_index: int, n_classes: int, seed: int) -> None:
    """A 96x72 JPEG: noise around a class colour with a class-specific shape in the middle."""
    rng = np.random.default_rng(zlib.crc32(f"{path.parent.name}/{seed}".encode()))
    hue = class_index / n_classes
    base = np.array([np.sin(2 * np.pi * (hue + k / 3)) * 100 + 128 for k in range(3)])
    pixels = np.clip(base + rng.normal(0, 30, (72, 96, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    x, y = 48 + int(rng.integers(-12, 12)), 36 + int(rng.integers(-8, 8))
    r = 12 + class_index % 4 * 4
    shape = (x - r, y - r, x + r, y + r)
    fill = tuple(int(255 - c) for c in base)
    if class_index % 3 == 0:
        draw.ellipse(shape, fill=fill)
    elif class_index % 3 == 1:
        draw.rectangle(shape, fill=fill)
    else:
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=90)


def write_fruits(out: Path, n_train: int, n_test: int) -> int:
    """The bundled Fruits-360 subset as ``fruits-360/Training`` + ``Test`` (first files)."""
    source = resource_path("data/fruits360-mini")
    count = 0
    for split, target, n in (("train", "Training", n_train), ("test", "Test", n_test)):
        for class_dir in sorted(p for p in (source / split).iterdir() if p.is_dir()):
            for image in sorted(class_dir.glob("*.jpg"))[:n]:
                dest = out / "fruits-360" / target / class_dir.name / image.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(image, dest)
                count += 1
    return count


def write_monkeys(out: Path, n_train: int, n_val: int) -> int:
    """Kaggle's doubled ``training/training`` and ``validation/validation`` folders."""
    count = 0
    for c, (key, _, _) in enumerate(MONKEYS):
        for folder, n in (("training/training", n_train), ("validation/validation", n_val)):
            for i in range(n):
                synthetic_photo(out / folder / key / f"{key}{i:02d}.jpg", c, len(MONKEYS), i)
                count += 1
    header = (
        "Label,  Latin Name           , Common Name                   , Train Images , "
        "Validation Images"
    )
    rows = [
        f"{key}   , {latin}\t, {common:<30}, {n_train:<13}, {n_val}"
        for key, latin, common in MONKEYS
    ]
    (out / "monkey_labels.txt").write_bytes(("\r\n".join([header, *rows]) + "\r\n").encode())
    return count


def write_birds(out: Path) -> int:
    """16 species, 4-9 training images each (unbalanced), 2 test images each."""
    count = 0
    for c, species in enumerate(BIRDS):
        for folder, n in (("train", 4 + c % 6), ("test", 2)):
            for i in range(n):
                synthetic_photo(out / folder / species / f"{i:02d}.jpg", c, len(BIRDS), i)
                count += 1
    return count


WRITERS = {
    "fruits360": lambda out: write_fruits(out, DEFAULTS["fruits_train"], DEFAULTS["fruits_test"]),
    "monkeys10": lambda out: write_monkeys(out, DEFAULTS["monkeys_train"], DEFAULTS["monkeys_val"]),
    "birds": write_birds,
}


def write_stand_in(name: str, root: Path) -> int:
    """The stand-in of dataset ``name`` at ``root`` (which must not exist yet); the number of
    images. Written under a temporary name beside ``root`` and renamed into place, so parallel
    sweep cells never read a half-written copy: one of them wins, the others use its copy."""
    if name not in WRITERS:
        raise ValueError(
            f"No stand-in data for dataset '{name}'; there are stand-ins for {', '.join(WRITERS)}."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".tmp-{os.getpid()}-{root.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        count = WRITERS[name](tmp)
        try:
            tmp.rename(root)
        except OSError:
            if not root.is_dir():
                raise
            log.info("Another job wrote the stand-in '%s' first; using it.", root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.warning(
        "Wrote the %s stand-in (%d generated or bundled images) in '%s'.", name, count, root
    )
    return count
