"""InceptionV3Classifier: ImageClassifier plus the auxiliary-classifier loss of InceptionV3."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchvision.models.inception import InceptionOutputs

from mbv3_lightning.models.registry import get_spec
from mbv3_lightning.training.module import ImageClassifier

# torchvision's reference recipe: loss = CE(logits) + 0.4 * CE(aux_logits) while training.
AUX_LOSS_WEIGHT = 0.4
# The auxiliary branch pools Mixed_6e's 17x17 map with a 5x5/3 window then a 5x5 conv, which
# only fits from 299 px; smaller inputs work without it (torchvision's minimum is 75 px).
AUX_MIN_INPUT_SIZE = 299


class InceptionV3Classifier(ImageClassifier):
    """Trains InceptionV3 with its auxiliary head (weight 0.4); evaluation uses the main logits."""

    def __init__(self, net: Mapping[str, Any], num_classes: int, **kwargs: Any) -> None:
        # Checked before building the network, so a bad size fails at once, not at step one.
        input_size = kwargs.get("input_size") or get_spec(net["arch"]).input_size
        if net.get("aux_logits", True) and input_size < AUX_MIN_INPUT_SIZE:
            raise ValueError(
                f"InceptionV3's auxiliary classifier needs input_size >= {AUX_MIN_INPUT_SIZE}, "
                f"got {input_size}. Use model.input_size={AUX_MIN_INPUT_SIZE} or "
                "model.net.aux_logits=false (then inputs down to 75 px work)."
            )
        super().__init__(net, num_classes, **kwargs)

    def compute_loss(
        self, outputs: Any, targets: torch.Tensor, stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Main loss plus 0.4 x the auxiliary loss in training; in eval the net gives logits."""
        if not isinstance(outputs, InceptionOutputs):
            return super().compute_loss(outputs, targets, stage)
        loss, logits = super().compute_loss(outputs.logits, targets, stage)
        if outputs.aux_logits is not None:
            aux_loss, _ = super().compute_loss(outputs.aux_logits, targets, stage)
            loss = loss + AUX_LOSS_WEIGHT * aux_loss
        return loss, logits
