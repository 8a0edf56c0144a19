"""One "predictor" for every model file: a Lightning checkpoint, an ONNX or a TorchScript export,
or a plain state dict (the car-colour MobileNetV3 recipe's ``best.pth``) with a class file and the
architecture's name.

predict, export and the web page all go through :func:`load_predictor`, so an image is
read (``load_rgb``), resized and normalised (``eval_transform``) exactly as in evaluation,
whatever runs the network.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mbv3_lightning.data.transforms import eval_transform
from mbv3_lightning.extras import require_extra
from mbv3_lightning.models.hparams import build_net, checked_hparams
from mbv3_lightning.models.registry import get_spec
from mbv3_lightning.models.safe_load import load_checkpoint

log = logging.getLogger(__name__)

TORCHSCRIPT_SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class ModelInfo:
    """What a model file must carry so no dataset or config is needed to use it."""

    arch: str
    class_names: list[str]
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # `dataset.preprocess` of the training run: how evaluation prepared its images. Exports
    # written before it was recorded lack it; they were all `augment` (resize + centre crop).
    preprocess: str = "augment"

    def to_metadata(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` and the TorchScript JSON sidecar."""
        return {key: json.dumps(value) for key, value in asdict(self).items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: Path) -> ModelInfo:
        """Inverse of :meth:`to_metadata`; names the missing keys and the file if any."""
        optional = {"preprocess"}  # has a default: exports older than it lack it
        required = [name for name in cls.__dataclass_fields__ if name not in optional]
        missing = [name for name in required if name not in metadata]
        if missing:
            raise ValueError(
                f"'{source}' lacks the metadata {', '.join(missing)}, so its classes and "
                "preprocessing are unknown. Export it with `mbv3 export`."
            )
        present = [name for name in cls.__dataclass_fields__ if name in metadata]
        try:
            values = {name: json.loads(metadata[name]) for name in present}
        except (TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"'{source}' has unreadable metadata: {error}") from None
        # Data from a file someone else may have written: each value has the type it must.
        wrong = [
            name
            for name, ok in (
                ("arch", isinstance(values["arch"], str)),
                ("class_names", _list_of(values["class_names"], str)),
                ("input_size", _list_of([values["input_size"]], int)),
                ("mean", _list_of(values["mean"], (int, float), 3)),
                ("std", _list_of(values["std"], (int, float), 3)),
                ("preprocess", isinstance(values.get("preprocess", ""), str)),
            )
            if not ok
        ]
        if wrong:
            raise ValueError(
                f"'{source}' has metadata of the wrong type: {', '.join(wrong)}. Export it "
                "again with `mbv3 export`."
            )
        values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
        return cls(**values)


def _list_of(value: object, kind: type | tuple[type, ...], length: int | None = None) -> bool:
    """A non-empty list of ``kind`` (never bool), of ``length`` items if given."""
    return (
        isinstance(value, list)
        and bool(value)
        and (length is None or len(value) == length)
        and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
    )


class Predictor:
    """Class probabilities for PIL images; subclasses only say how to run a float batch."""

    runtime = "abstract"

    def __init__(self, info: ModelInfo, source: Path) -> None:
        self.info = info
        self.source = source
        self._transform = eval_transform(info.preprocess, info.input_size, info.mean, info.std)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB images -> the normalised ``(N, 3, input_size, input_size)`` float batch."""
        return torch.stack([self._transform(image) for image in images])

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        """Raw network outputs for a preprocessed batch."""
        raise NotImplementedError

    def predict(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Softmax probabilities, one row per image, columns in ``info.class_names`` order."""
        return softmax(self.logits(self.preprocess(images)))

    @property
    def device(self) -> str:
        """Where the forward pass runs, in words (``CPU``, ``GPU (NVIDIA H100)``)."""
        return "CPU"

    def warm_up(self) -> None:
        """One untimed pass on a blank image: the first call pays for lazy initialisation
        (allocator, kernels, thread pools), which no timed prediction should include."""
        size = self.info.input_size
        self.predict([Image.new("RGB", (size, size), "white")])


class TorchPredictor(Predictor):
    """An eager PyTorch network rebuilt from a checkpoint (or any ``nn.Module``)."""

    runtime = "PyTorch eager"

    def __init__(self, net: torch.nn.Module, info: ModelInfo, source: Path) -> None:
        super().__init__(info, source)
        # channels_last, as in training: faster at batch 1 too, for every registry model
        # (benchmarks/memory_format.py; numbers in benchmarks/results/).
        self.net = net.eval().to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def logits(self, batch: torch.Tensor) -> np.ndarray:
        device = next(self.net.parameters(), torch.empty(0)).device
        batch = batch.to(device).contiguous(memory_format=torch.channels_last)
        return self.net(batch).float().cpu().numpy()

    @property
    def device(self) -> str:
        device = next(self.net.parameters(), torch.empty(0)).device
        if device.type == "cuda":
            return f"GPU ({torch.cuda.get_device_name(device)})"
        return device.type.upper()


class TorchScriptPredictor(TorchPredictor):
    """A TorchScript export with its JSON sidecar."""

    runtime = "TorchScript"


class OnnxPredictor(Predictor):
    """An ONNX file run by ONNX Runtime on the CPU; classes and preprocessing from metadata."""

    runtime = "ONNX Runtime"

    def __init__(
        self, model: str | Path | bytes, info: ModelInfo, source: Path, threads: int | None = None
    ) -> None:
        require_extra("export", f"The ONNX model {source}")
        import onnxruntime as ort

        super().__init__(info, source)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        path_or_bytes = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(
            path_or_bytes, options, providers=["CPUExecutionProvider"]
        )
        self._input_name = self.session.get_inputs()[0].name

    def logits(self, batch: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {self._input_name: batch.numpy()})[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, so probabilities sum to 1 to ~1e-12."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def top_k(probabilities: np.ndarray, class_names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most likely ``(class name, probability)`` pairs of one probability row."""
    order = np.argsort(-probabilities, kind="stable")[: max(1, k)]
    return [(class_names[i], float(probabilities[i])) for i in order]


def load_checkpoint_network(ckpt_path: Path) -> tuple[torch.nn.Module, ModelInfo]:
    """Rebuild the trained network of a Lightning checkpoint from its hyper-parameters.

    Only the network is rebuilt (from the registry, with ``weights_only=True``), not the
    LightningModule, so any registered architecture loads, whichever ImageClassifier
    subclass trained it, and no optimiser or metric state is created.
    """
    checkpoint = load_checkpoint(ckpt_path)
    hparams = checked_hparams(checkpoint.get("hyper_parameters"), ckpt_path)
    net_cfg, num_classes = hparams["net"], hparams["num_classes"]
    arch = net_cfg["arch"]
    spec = get_spec(arch)
    net = build_net({**net_cfg, "pretrained": False, "weights_path": None}, num_classes)
    state = {
        key.removeprefix("net."): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith("net.")
    }
    net.load_state_dict(state)
    info = ModelInfo(
        arch=arch,
        class_names=list(hparams.get("class_names") or [str(i) for i in range(num_classes)]),
        input_size=int(hparams.get("input_size") or spec.input_size),
        mean=tuple(spec.mean),
        std=tuple(spec.std),
        preprocess=str(hparams.get("preprocess") or "augment"),
    )
    return net.eval(), info


def onnx_model_info(path: Path) -> ModelInfo:
    """The :class:`ModelInfo` stored in an ONNX file's ``metadata_props``."""
    require_extra("export", f"The ONNX model {path}")
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends name no file
        raise ValueError(
            f"'{path}' is not a readable ONNX model ({type(error).__name__}: {error}). Export "
            "one with `mbv3 export ckpt_path=<ckpt> format=onnx`."
        ) from None
    return ModelInfo.from_metadata({p.key: p.value for p in model.metadata_props}, path)


def torchscript_sidecar(path: Path) -> Path:
    """``model.pt`` -> ``model.pt.json``: where a TorchScript export keeps its metadata."""
    return path.with_name(path.name + TORCHSCRIPT_SIDECAR_SUFFIX)


def read_class_file(path: str | Path) -> list[str]:
    """Class names in index order from a ``class_indices.json``: the car-colour MobileNetV3 recipe's
    ``{"0": "black", "1": "blue", ...}``, or this project's file (which holds that map too,
    and ``names``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Class file '{path}' does not exist.")
    data = json.loads(path.read_text())
    if isinstance(data, dict) and isinstance(data.get("names"), list):
        return [str(name) for name in data["names"]]
    indexed = {int(k): str(v) for k, v in data.items() if str(k).isdigit()} if data else {}
    if not indexed or sorted(indexed) != list(range(len(indexed))):
        raise ValueError(
            f"'{path}' is no index -> class name map: expected "
            '{"0": "<first class>", "1": "<second class>", ...} with indices 0..N-1.'
        )
    return [indexed[i] for i in range(len(indexed))]


def _is_plain_state_dict(loaded: object) -> bool:
    return (
        isinstance(loaded, dict)
        and bool(loaded)
        and all(isinstance(v, torch.Tensor) for v in loaded.values())
    )


def load_state_dict_network(
    path: Path, classes: str | Path, arch: str, input_size: int | None = None
) -> tuple[torch.nn.Module, ModelInfo]:
    """A registry network with the weights of a plain state dict (the recipe's ``best.pth``).

    A state dict carries no architecture, classes or input size, so ``arch`` names the
    registry architecture and ``classes`` the class file; keys saved from a wrapper
    (``net.``, ``module.``) are accepted. Loaded with ``weights_only=True``: tensors only.
    """
    state = load_checkpoint(path)
    if not _is_plain_state_dict(state):
        raise ValueError(f"'{path}' is not a state dict (a mapping of parameter names to tensors).")
    class_names = read_class_file(classes)
    spec = get_spec(arch)
    net = build_net({"arch": arch, "pretrained": False, "weights_path": None}, len(class_names))
    for prefix in ("net.", "module."):
        if all(key.startswith(prefix) for key in state):
            state = {key.removeprefix(prefix): value for key, value in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"'{path}' does not fit {arch} with {len(class_names)} classes (from '{classes}'): "
            f"{str(error).splitlines()[0]} Check `arch=` (the architecture it was trained as) "
            "and that the class file belongs to these weights."
        ) from error
    info = ModelInfo(
        arch=spec.name,
        class_names=class_names,
        input_size=int(input_size or spec.input_size),
        mean=tuple(spec.mean),
        std=tuple(spec.std),
    )
    return net.eval(), info


def load_predictor(
    path: str | Path,
    *,
    classes: str | Path | None = None,
    arch: str | None = None,
    input_size: int | None = None,
) -> Predictor:
    """A predictor for a ``.ckpt`` checkpoint, an ``.onnx`` or a TorchScript ``.pt`` export,
    or a plain state dict given with ``classes`` (a class_indices.json) and ``arch``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Model file '{path}' does not exist. Pass `ckpt_path=` a checkpoint "
            "(<run dir>/checkpoints/*.ckpt) or an export (*.onnx, *.pt)."
        )
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return OnnxPredictor(path, onnx_model_info(path), path)
    if suffix in (".pt", ".pth") and torchscript_sidecar(path).is_file():
        metadata = json.loads(torchscript_sidecar(path).read_text())
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
            module = torch.jit.load(str(path), map_location="cpu")
        return TorchScriptPredictor(
            module,
            ModelInfo.from_metadata(metadata, path),
            path,
        )
    if classes is not None or arch is not None:
        if classes is None or arch is None:
            raise ValueError(
                f"'{path}' given as a state dict needs both `classes=` (its class_indices.json) "
                "and `arch=` (the registry architecture it was trained as, e.g. "
                "mobilenet_v3_small); a state dict carries neither."
            )
        net, info = load_state_dict_network(path, classes, arch, input_size)
    else:
        if _is_plain_state_dict(load_checkpoint(path)):
            raise ValueError(
                f"'{path}' is a plain state dict (weights only): also pass `classes=` (its "
                "class_indices.json) and `arch=` (the architecture it was trained as, e.g. "
                "`arch=mobilenet_v3_small`)."
            )
        net, info = load_checkpoint_network(path)
    log.info(
        "Loaded %s (%d classes, %d px) from %s",
        info.arch,
        len(info.class_names),
        info.input_size,
        path,
    )
    return TorchPredictor(net, info, path)
