"""How long one epoch of each paper_mbv3 cell takes on this machine, from measured batches.

`python -m benchmarks.paper_epoch_time`: times training steps and evaluation batches (batch 32,
channels_last, the model's input size) of the five models of the MobileNetV3 image-classification
paper, then multiplies by the batches of one epoch of each dataset at the paper's 0.7/0.3 split.
Not part of the 15-minute suite: the paper's grid is a GPU job; this says what it costs on CPU.
"""

from __future__ import annotations

import math

import torch

from benchmarks.memory_format import steps_seconds
from mbv3_lightning.models.registry import get_spec

MODELS = ("mobilenet_v3_large", "mobilenet_v3_small", "alexnet", "inception_v3", "shufflenet_v2")
# (train, val) images at val_fraction 0.3 of each dataset's training folder
DATASETS = {"fruits360": (47_384, 20_308), "monkeys10": (768, 329), "birds": (105, 45)}
BATCH = 32
STEPS = 2


def main() -> None:
    header = ["model (px)", "s/batch train", "s/batch eval"]
    header += [f"{dataset} (min/epoch)" for dataset in DATASETS]
    print(f"{torch.get_num_threads()} torch threads")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in MODELS:
        train = steps_seconds(name, "channels_last", "train", BATCH, STEPS, "cpu") / STEPS
        evaluate = steps_seconds(name, "channels_last", "eval", BATCH, STEPS, "cpu") / STEPS
        minutes = [
            (math.ceil(n_train / BATCH) * train + math.ceil(n_val / BATCH) * evaluate) / 60
            for n_train, n_val in DATASETS.values()
        ]
        cells = [f"{name} ({get_spec(name).input_size})", f"{train:.2f}", f"{evaluate:.2f}"]
        print("| " + " | ".join(cells + [f"{m:,.1f}" for m in minutes]) + " |")


if __name__ == "__main__":
    main()
