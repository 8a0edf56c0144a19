"""Parameters and multiply-accumulates (MACs) of a network, as papers report them.

ptflops' ``aten`` backend counts the convolutions and matrix multiplies only, which is the
convention of the MobileNet papers and torchvision's metadata (MobileNetV3-Large: 217 M MACs
at 224 px). FLOPs are reported as 2 x MACs; some papers print MACs under the name FLOPs.
"""

from __future__ import annotations

import copy
import warnings

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
