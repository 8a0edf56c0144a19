"""ImageNet weights from torchvision's weights enums, or a local state dict, into a backbone.

Loading is strict for everything but the classifier head(s), which are replaced for the
dataset anyway; the head keys that were skipped are logged. A missing file is an error with
the fix in it, never a silent fall-back to random weights.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import WeightsEnum, get_model_weights

from mbv3_lightning.models.safe_load import load_checkpoint

log = logging.getLogger(__name__)

# The original ImageNet weights of every torchvision model: what `pretrained=True` meant when
# the MobileNetV3 image-classification paper was written, and all but ShuffleNetV2 x1.5/x2.0
# share the DataModule's eval transform (resize to input_size / 0.875, centre crop, ImageNet
# mean/std).
WEIGHTS_VERSION = "IMAGENET1K_V1"


def imagenet_weights(torchvision_name: str) -> WeightsEnum:
    """torchvision's ImageNet weights entry (URL, file name, transforms) for a model name."""
    return get_model_weights(torchvision_name)[WEIGHTS_VERSION]


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``, where torch.hub caches and looks for weight files."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def download_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """The state dict of ``weights`` from the torch hub cache, downloading it if missing."""
    file_name = os.path.basename(weights.url)
    try:
        return torch.hub.load_state_dict_from_url(
            weights.url, progress=False, check_hash=True, weights_only=True
        )
    except (URLError, OSError) as error:
        raise FileNotFoundError(
            f"ImageNet weights {weights} are not in the torch hub cache and could not be "
            f"downloaded ({error}). Download {weights.url} on a machine with internet and put "
            f"it as '{file_name}' into '{hub_checkpoint_dir()}' (that is "
            "$TORCH_HOME/hub/checkpoints/), or pass a local file with model.net.weights_path=... . "
            "Training will not fall back to random weights."
        ) from error


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a file: a plain ``torch.save(net.state_dict())`` or a Lightning checkpoint.

    Lightning checkpoints of this project hold the network under ``state_dict`` with a
    ``net.`` prefix; that prefix is removed so a fine-tuned run can seed the next one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.net.weights_path '{path}' does not exist or is not a file.")
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = {
            key.removeprefix("net."): value
            for key, value in state["state_dict"].items()
            if key.startswith("net.")
        }
    if not isinstance(state, dict) or not state:
        raise ValueError(f"model.net.weights_path '{path}' holds no state dict of a network.")
    return state


def _is_under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def load_backbone(
    net: nn.Module,
    state_dict: dict[str, torch.Tensor],
    *,
    heads: tuple[str, ...],
    source: str,
) -> list[str]:
    """Load every non-head tensor strictly; returns the skipped keys.

    Skipped are the keys under ``heads`` (replaced for the dataset afterwards) and under
    sub-modules the network was built without (set to ``None``, as torchvision's InceptionV3
    does for ``aux_logits=False``).
    """
    absent = tuple(name for name, child in net._modules.items() if child is None)
    skip = (*heads, *absent)
    skipped = sorted(k for k in state_dict if _is_under(k, skip))
    backbone = {k: v for k, v in state_dict.items() if not _is_under(k, skip)}
    expected = {k for k in net.state_dict() if not _is_under(k, skip)}
    own = net.state_dict()
    missing = sorted(expected - backbone.keys())
    unexpected = sorted(backbone.keys() - expected)
    reshaped = sorted(k for k in expected & backbone.keys() if own[k].shape != backbone[k].shape)
    if missing or unexpected or reshaped:
        first = reshaped[0] if reshaped else None
        shapes = (
            f" (e.g. {first}: {tuple(backbone[first].shape)} in the file, "
            f"{tuple(own[first].shape)} in the network)"
            if first
            else ""
        )
        raise ValueError(
            f"Weights from {source} do not fit {type(net).__name__}: "
            f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys "
            f"{unexpected[:5]}, {len(reshaped)} keys of another shape{shapes}. Check that "
            "model.net.arch and its variant knobs (width_mult, size) match the network the weights "
            "were saved from."
        )
    net.load_state_dict(backbone, strict=False)
    log.info(
        "Loaded %d tensors from %s; skipped %d head keys: %s",
        len(backbone),
        source,
        len(skipped),
        ", ".join(skipped) or "none",
    )
    return skipped
