"""An exported model file as a ``torch.nn.Module``, so ``Trainer.test`` can score it.

``mbv3 evaluate ckpt_path=model.pte`` then runs the same test loop, metrics, per-class table,
ROC and files as for a checkpoint; only the forward pass is the file's own runtime
(ONNX Runtime, ExecuTorch, LiteRT, TorchScript) on the CPU.
"""

from __future__ import annotations

import torch

from mbv3_lightning.deploy.predictor import Predictor


class RuntimeNetwork(torch.nn.Module):
    """Logits of ``predictor`` for a preprocessed batch, on the batch's device.

    It has no parameters: the weights live in the file, and no optimiser may train them.
    """

    def __init__(self, predictor: Predictor) -> None:
        super().__init__()
        self.predictor = predictor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Runtimes take dense NCHW float32 on the CPU; the test loop may hand channels_last.
        batch = images.detach().to("cpu", torch.float32).contiguous()
        return torch.from_numpy(self.predictor.logits(batch)).to(images.device)
