"""A sample of test predictions with the images the model saw, for the W&B predictions table."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mbv3_lightning.tracking.results import MAX_PREDICTION_ROWS, Prediction


@torch.inference_mode()
def sample_predictions(
    model: Any, dataset: Any, limit: int = MAX_PREDICTION_ROWS, batch_size: int = 50
) -> list[Prediction]:
    """Up to ``limit`` images spread evenly over ``dataset`` (whose files are usually sorted by
    class, so the first ``limit`` would show one or two classes), with true and predicted
    class and the confidence of the prediction."""
    if len(dataset) == 0:
        return []
    indices = np.unique(np.linspace(0, len(dataset) - 1, min(limit, len(dataset))).astype(int))
    mean = torch.tensor(model.mean).view(1, 3, 1, 1)
    std = torch.tensor(model.std).view(1, 3, 1, 1)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    names = list(model.class_names)
    rows: list[Prediction] = []
    try:
        for start in range(0, len(indices), batch_size):
            items = [dataset[int(i)] for i in indices[start : start + batch_size]]
            images = torch.stack([image for image, _ in items])
            probs = model(images.to(device)).float().softmax(dim=1).cpu()
            confidence, predicted = probs.max(dim=1)
            pixels = ((images * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
            for (_, label), picture, p, c in zip(items, pixels, predicted, confidence, strict=True):
                rows.append(
                    Prediction(
                        image=picture.permute(1, 2, 0).numpy(),
                        label=names[int(label)],
                        predicted=names[int(p)],
                        confidence=round(float(c), 4),
                    )
                )
    finally:
        model.train(was_training)
    return rows
