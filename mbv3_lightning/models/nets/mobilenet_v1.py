"""MobileNetV1 (Howard et al. 2017, Table 1): a 3x3 stem and 13 depthwise-separable blocks.

The architecture is data: ``BLOCKS`` lists (output channels, stride) per block, as timm does,
so ``width_mult`` (the paper's alpha) scales every row and nothing else changes.
"""

from __future__ import annotations

import torch
from torch import nn

# (output channels, stride) of each depthwise-separable block, rows 2-27 of the paper's Table 1.
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *[(512, 1)] * 5,
    (1024, 2),
    (1024, 1),
)
STEM_CHANNELS = 32
ACTIVATIONS = {"relu6": nn.ReLU6, "relu": nn.ReLU}


def scale_channels(channels: int, width_mult: float, divisor: int = 8) -> int:
    """``channels * width_mult`` rounded to a multiple of ``divisor`` (never below it).

    For the paper's alphas (1.0, 0.75, 0.5, 0.25) every width is already such a multiple, so the
    rounding only matters for other values, where it keeps kernels hardware friendly.
    """
    scaled = max(divisor, int(channels * width_mult + divisor / 2) // divisor * divisor)
    if scaled < 0.9 * channels * width_mult:  # never round down by more than 10%
        scaled += divisor
    return scaled


def conv_bn_act(
    in_channels: int, out_channels: int, kernel: int, stride: int, groups: int, act: type
) -> nn.Sequential:
    """Convolution without bias, BatchNorm, activation: every layer of the paper's Figure 3."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        act(inplace=True),
    )


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise convolution (one filter per channel) then a 1x1 pointwise convolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: type) -> None:
        super().__init__(
            conv_bn_act(in_channels, in_channels, 3, stride, groups=in_channels, act=act),
            conv_bn_act(in_channels, out_channels, 1, 1, groups=1, act=act),
        )


class MobileNetV1(nn.Module):
    """``features`` (stem + 13 blocks), global average pool, ``classifier`` (dropout, FC)."""

    def __init__(
        self,
        num_classes: int = 1000,
        *,
        width_mult: float = 1.0,
        activation: str = "relu6",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"model.net.width_mult must be > 0, got {width_mult}.")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Unknown MobileNetV1 activation '{activation}'. Available: "
                f"{', '.join(ACTIVATIONS)} (model.net.activation)."
            )
        act = ACTIVATIONS[activation]
        channels = scale_channels(STEM_CHANNELS, width_mult)
        layers: list[nn.Module] = [conv_bn_act(3, channels, 3, 2, groups=1, act=act)]
        for out_channels, stride in BLOCKS:
            out_channels = scale_channels(out_channels, width_mult)
            layers.append(DepthwiseSeparable(channels, out_channels, stride, act))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        # The same scheme torchvision uses for its MobileNets.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x)).flatten(1)
        return self.classifier(x)
