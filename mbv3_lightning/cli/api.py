"""The Python API: ``mbv3_lightning.train``, ``.load`` and ``.predict``.

The same jobs as the commands, for a notebook or a script: ``train`` composes the same
config the command line would (overrides in Hydra syntax, checked the same way) and returns
the run's record; ``load`` gives a model that classifies PIL images or image files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PIL import Image

from mbv3_lightning.cli.config import CONFIG_NAME, compose_config
from mbv3_lightning.cli.config_check import check_config
from mbv3_lightning.cli.logs import run_log
from mbv3_lightning.data.images import load_rgb
from mbv3_lightning.deploy.predictor import Predictor, load_predictor
from mbv3_lightning.deploy.predictor import top_k as rank
from mbv3_lightning.runs.record import RunRecord
from mbv3_lightning.runs.run_dir import claim_run_dir

ImageInput = Image.Image | str | Path


@dataclass(frozen=True)
class Classification:
    """The model's answer for one image: the top class, its probability, and the top k."""

    label: str
    confidence: float
    top_k: list[tuple[str, float]]


class Classifier:
    """A trained model (``.ckpt``, or an export: ``.onnx``, TorchScript ``.pt``, ExecuTorch
    ``.pte``, LiteRT ``.tflite``) that classifies images."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    @property
    def class_names(self) -> list[str]:
        return list(self.predictor.info.class_names)

    def predict(
        self, images: ImageInput | Iterable[ImageInput], k: int = 5
    ) -> list[Classification]:
        """One :class:`Classification` per image (a PIL image or a path), in order."""
        items = [images] if isinstance(images, (Image.Image, str, Path)) else list(images)
        pictures = [i.convert("RGB") if isinstance(i, Image.Image) else load_rgb(i) for i in items]
        if not pictures:
            return []
        results = []
        for row in self.predictor.predict(pictures):
            ranked = rank(row, self.class_names, k)
            results.append(Classification(ranked[0][0], ranked[0][1], ranked))
        return results

    def __call__(self, image: ImageInput, k: int = 5) -> Classification:
        """The classification of one image."""
        return self.predict(image, k)[0]


def load(ckpt: str | Path) -> Classifier:
    """A model from a checkpoint of this project or an export of it, ready to classify."""
    return Classifier(load_predictor(ckpt))


def predict(
    ckpt: str | Path, images: ImageInput | Iterable[ImageInput], k: int = 5
) -> list[Classification]:
    """Classify ``images`` with the model in ``ckpt`` (see :func:`load` to keep it loaded)."""
    return load(ckpt).predict(images, k)


def train(overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> RunRecord:
    """Train (and test) like ``mbv3 train <overrides>``; returns the run's record (metrics.json).

    ``output_dir`` defaults to ``outputs/<date>/<time>`` under the working directory, as on the
    command line. As there, the progress bar and warnings are shown and every other log line
    goes to ``<output_dir>/train.log``.
    """
    from hydra.core.hydra_config import HydraConfig

    from mbv3_lightning.cli.pte_timing import pte_cost
    from mbv3_lightning.training.run import run

    cfg = compose_config(CONFIG_NAME, overrides, hydra_runtime=True)
    check_config(cfg)
    if output_dir is None:  # claimed, so two calls in one second get two folders
        output_dir = claim_run_dir(Path("outputs") / datetime.now().strftime("%Y-%m-%d/%H-%M-%S"))
    cfg = compose_config(CONFIG_NAME, overrides, hydra_runtime=True, output_dir=Path(output_dir))
    deploy_cost = pte_cost(cfg, HydraConfig.get())  # pte_timing.enabled=true, as in the command
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    with run_log(Path(output_dir) / "train.log"):
        return run(cfg, deploy_cost=deploy_cost)
