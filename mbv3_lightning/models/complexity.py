"""Parameters and multiply-accumulates (MACs) of a network, as papers report them.

ptflops' ``aten`` backend counts the convolutions and matrix multiplies only, which is the
convention of the MobileNet papers and torchvision's metadata (MobileNetV3-Large: 217 M MACs
at 224 px). FLOPs are reported as 2 x MACs; some papers print MACs under the name FLOPs.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from ptflops import get_model_complexity_info
from torch import nn


def count_macs(net: nn.Module, input_size: int) -> int:
    """MACs of one forward pass of a single ``3 x input_size x input_size`` image."""
    probe = copy.deepcopy(net).eval()  # ptflops adds hooks/attributes; keep the real net clean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, _ = get_model_complexity_info(
            probe,
            (3, input_size, input_size),
            as_strings=False,
            print_per_layer_stat=False,
            backend="aten",
            verbose=False,
        )
    return int(macs)


def complexity(net: nn.Module, input_size: int) -> dict[str, int]:
    """``params``, ``macs`` and ``flops`` (= 2 x MACs) at ``input_size``."""
    macs = count_macs(net, input_size)
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "macs": macs,
        "flops": 2 * macs,
    }


LAYER_KINDS = ("depthwise conv", "pointwise conv (1x1)", "regular conv", "fully connected")


def layer_kind(module: nn.Module) -> str | None:
    """Which of :data:`LAYER_KINDS` a layer is (``None`` for layers without MACs)."""
    if isinstance(module, nn.Linear):
        return "fully connected"
    if not isinstance(module, nn.Conv2d):
        return None
    if module.groups > 1 and module.groups == module.in_channels:
        return "depthwise conv"
    if module.kernel_size == (1, 1) and module.groups == 1:
        return "pointwise conv (1x1)"
    return "regular conv"


def _forward_with_hooks(
    net: nn.Module,
    input_size: int,
    hook: Callable[[nn.Module, Any, Any], None],
    select: Callable[[nn.Module], object] = lambda _module: True,
) -> nn.Module:
    """One eval forward pass of a copy of ``net`` with ``hook`` on the selected modules.

    Returns the copy, whose modules the hook saw (the real network is never touched).
    """
    probe = copy.deepcopy(net).eval()
    hooks = [m.register_forward_hook(hook) for m in probe.modules() if select(m)]
    try:
        with torch.inference_mode():
            probe(torch.zeros(1, 3, input_size, input_size))
    finally:
        for handle in hooks:
            handle.remove()
    return probe


def layer_breakdown(net: nn.Module, input_size: int) -> dict[str, dict[str, float]]:
    """MACs and parameters per layer kind, as in the MobileNet paper's Table 2.

    Counted with forward hooks on one ``3 x input_size x input_size`` image: a convolution does
    ``(in_channels / groups) x kernel area`` MACs per output element, a linear layer
    ``in_features`` per output element. Shares are of the convolution + FC total (BatchNorm
    parameters, ~1% of a MobileNet, are left out as the paper does).
    """
    totals = {kind: {"macs": 0, "params": 0} for kind in LAYER_KINDS}

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        kind = layer_kind(module)
        assert kind is not None  # hooks are only on the layers layer_kind selects
        if isinstance(module, nn.Conv2d):
            kernel_area = module.kernel_size[0] * module.kernel_size[1]
            macs = output.numel() * (module.in_channels // module.groups) * kernel_area
        else:
            assert isinstance(module, nn.Linear)
            macs = output.numel() * module.in_features
        totals[kind]["macs"] += macs
        totals[kind]["params"] += sum(p.numel() for p in module.parameters(recurse=False))

    _forward_with_hooks(net, input_size, count, select=layer_kind)
    all_macs = sum(t["macs"] for t in totals.values()) or 1
    all_params = sum(t["params"] for t in totals.values()) or 1
    return {
        kind: {
            "macs": t["macs"],
            "params": t["params"],
            "macs_share": t["macs"] / all_macs,
            "params_share": t["params"] / all_params,
        }
        for kind, t in totals.items()
    }


def inference_parameters(net: nn.Module, input_size: int) -> int:
    """Parameters of the layers an eval forward pass runs.

    Differs from the total only for training-only branches: InceptionV3's auxiliary classifier
    (27.16 M total, 23.83 M at inference, the number papers quote).
    """
    used: set[int] = set()
    probe = _forward_with_hooks(net, input_size, lambda module, _i, _o: used.add(id(module)))
    return sum(
        p.numel() for m in probe.modules() if id(m) in used for p in m.parameters(recurse=False)
    )
