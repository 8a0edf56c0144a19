"""`mbv3 review ckpt_path=<ckpt> [dataset=...] [split=val] [top=25]`.

Ranks every image of a dataset split by how likely its label is wrong (cleanlab's
label-quality score on the model's probabilities) and writes ``review.csv`` and a contact
sheet ``review.png`` of the most suspicious images into the run directory. The work is in
:mod:`mbv3_lightning.deploy.review`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mbv3_lightning.cli.config import config_dir, register_resolvers
from mbv3_lightning.cli.logs import route_lightning_logs

log = logging.getLogger(__name__)

register_resolvers()

SPLITS = ("train", "val", "test")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="review")
def main(cfg: DictConfig) -> Path:
    # Imported here so `--help` and `--cfg job` answer without loading torch.
    import lightning as L
    from hydra.utils import instantiate

    from mbv3_lightning.deploy.predictor import load_predictor
    from mbv3_lightning.deploy.review import (
        review_samples,
        write_contact_sheet,
        write_review_csv,
    )
    from mbv3_lightning.runs.files import write_split_files

    route_lightning_logs()
    if cfg.split not in SPLITS:
        raise ValueError(f"split={cfg.split!r} is not a split; choose one of: {' | '.join(SPLITS)}")
    if cfg.top < 1:
        raise ValueError(f"top must be >= 1, got {cfg.top}.")
    L.seed_everything(cfg.seed)  # the val split of a train-only folder is a seeded draw
    predictor = load_predictor(
        cfg.ckpt_path, classes=cfg.classes, arch=cfg.arch, input_size=cfg.input_size
    )
    output_dir = Path(cfg.paths.output_dir)
    info = predictor.info
    datamodule = instantiate(cfg.dataset, input_size=info.input_size, mean=info.mean, std=info.std)
    if list(datamodule.class_names) != list(info.class_names):
        raise ValueError(
            f"The model's classes {info.class_names} differ from dataset '{datamodule.root}' "
            f"({datamodule.class_names}); review a dataset with the classes it was trained on "
            "(`dataset=...`, `dataset.root=...`)."
        )
    samples = datamodule.samples(cfg.split)
    if not samples:
        present = [s for s in SPLITS if datamodule.has_split(s)]
        raise ValueError(
            f"Dataset '{datamodule.name}' has no {cfg.split} split; it has: {', '.join(present)}."
        )
    if cfg.split == "train":
        log.warning(
            "Reviewing the training split: the model has fitted these labels, wrong ones "
            "included, so mislabelled images score better than they would on held-out data."
        )
    log.info("Scoring %d %s images with %s.", len(samples), cfg.split, predictor.source)
    rows = review_samples(predictor, samples, cfg.batch_size)
    write_split_files(output_dir, datamodule.manifest(), datamodule.class_indices())
    write_review_csv(rows, output_dir / "review.csv")
    title = (
        f"{info.arch} on {datamodule.name}, {cfg.split} split: the {min(cfg.top, len(rows))} "
        "labels most likely wrong (cleanlab label quality)"
    )
    write_contact_sheet(rows[: cfg.top], output_dir / "review.png", title)
    disagree = sum(row.given != row.predicted for row in rows)
    print(  # the CLI's final summary
        f"Reviewed {len(rows)} {cfg.split} images: {disagree} predicted differently from their "
        f"label. Most suspicious first in {output_dir / 'review.csv'}; "
        f"contact sheet {output_dir / 'review.png'}."
    )
    return output_dir


if __name__ == "__main__":
    main()
