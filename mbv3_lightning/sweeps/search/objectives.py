"""What a trial scores: values every finished run records, read from its typed record.

A study names one objective per direction (``hydra.sweeper.objective``): a metric Lightning
logged (``val/acc_best``, ``test/acc``, ...) or a cost the run measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mbv3_lightning.runs.record import RunRecord

# The phone's cost: measured after the test when a study names it (cli/train.py)
PTE_OBJECTIVE = "pte_ms_per_image"
# name -> what it is, as the report's axes and tables say it
COSTS = {
    "test_ms_per_image": "test ms per image (batch 1, median)",
    "test_set_ms_per_image": "test-set ms per image",
    # the best checkpoint as an ExecuTorch .pte on the CPU (conf/train.yaml: pte_timing)
    PTE_OBJECTIVE: "ExecuTorch .pte ms per image (batch 1, median)",
    "macs": "MACs",
    "params": "parameters",
    "flops": "FLOPs",
    "train_time_s": "training time (s)",
}
DIRECTIONS = ("maximize", "minimize")


class ObjectiveError(ValueError):
    """Objectives and directions that do not fit together, or a value no run records."""


def check_objectives(objectives: Sequence[str], directions: Sequence[str]) -> None:
    """One direction per objective, and each objective a value runs record."""
    if len(objectives) != len(directions):
        raise ObjectiveError(
            f"hydra.sweeper: {len(directions)} direction(s) {list(directions)} for "
            f"{len(objectives)} objective(s) {list(objectives)}; give one direction per "
            "objective."
        )
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ObjectiveError(
                f"hydra.sweeper.direction: '{direction}' is not one of {', '.join(DIRECTIONS)}."
            )
    for name in objectives:
        if name not in COSTS and "/" not in name:
            raise ObjectiveError(
                f"hydra.sweeper.objective: '{name}' is not a value runs record; use a metric "
                f"(val/acc_best, test/acc, ...) or a cost ({', '.join(COSTS)})."
            )


def objective_value(record: RunRecord, name: str) -> float | None:
    """``name``'s value in ``record``; ``None`` when the run did not record it (or it is not a
    finite number, which Optuna cannot rank)."""
    value: float | int | None
    if name in ("test_ms_per_image", PTE_OBJECTIVE):
        timing = getattr(record.cost, name)
        value = timing.get("median") if timing else None
    elif name == "train_time_s":
        value = record.timings.train_time_s
    elif name in COSTS:
        value = getattr(record.cost, name)
    else:
        value = record.metrics.get(name)
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def label(name: str) -> str:
    """How tables and figure axes name an objective."""
    return COSTS.get(name, name)
