"""Read a sweep directory back: one record per cell, grouped per dataset and variant over seeds.

Works on partial sweeps and on runs written before a key existed: a cell without
``metrics.json`` is kept (with its status) so reports can mark it, a missing key is ``None``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mbv3_lightning.runs.files import read_run_curves
from mbv3_lightning.runs.record import RunRecord
from mbv3_lightning.runs.run_dir import RunDir


def _median(speed: dict[str, float] | None) -> float | None:
    return None if not speed else speed.get("median")


# The numbers a report reads from a run's record by name, each from its typed field; any other
# name is one of the record's metrics (``test/acc``, ``val/acc_best``, ...).
FIELDS: dict[str, Callable[[RunRecord], Any]] = {
    "params": lambda r: r.cost.params,
    "params_trainable": lambda r: r.cost.params_trainable,
    "macs": lambda r: r.cost.macs,
    "flops": lambda r: r.cost.flops,
    "train_time_s": lambda r: r.timings.train_time_s,
    "epochs": lambda r: r.timings.epochs,
    "best_epoch": lambda r: r.timings.best_epoch,
    "input_size": lambda r: r.data.input_size,
    "test_ms_per_image": lambda r: _median(r.cost.test_ms_per_image),
    "test_images_per_s": lambda r: r.cost.test_images_per_s,
    "test_set_ms_per_image": lambda r: r.cost.test_set_ms_per_image,
}

# Swept keys that say *where* or *which repeat*, not *which variant*: they never name a row.
_NOT_VARIANT_KEYS = ("model", "dataset", "seed", "experiment", "sweep.")


@dataclass
class Cell:
    """One job of a sweep: where it ran, how it ended, and its metrics if it finished."""

    job: int | None
    run_dir: Path
    overrides: list[str]
    status: str
    error: str | None = None
    record: RunRecord | None = None
    swept_keys: frozenset[str] = field(default=frozenset())  # the keys the grid varies
    # model and dataset of the sweep's finished cells, for unfinished cells whose overrides
    # do not name them (the grid does not vary them, so they are the same)
    shared: dict[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.record is not None

    def value(self, key: str) -> float | None:
        """One number of the cell's record by name (:data:`FIELDS`, else its ``metrics``);
        None if the cell has no record or the record lacks it."""
        if self.record is None:
            return None
        read = FIELDS.get(key)
        value = read(self.record) if read is not None else self.record.metrics.get(key)
        return float(value) if isinstance(value, int | float) else None

    @property
    def dataset(self) -> str:
        # Every user folder is named "image_folder": its root's name tells them apart.
        root = _override_value(self.overrides, "dataset.root")
        if self.record is not None:
            name = self.record.dataset
            root = root or (self.record.config or {}).get("dataset", {}).get("root")
            return Path(root).name if root and name == "image_folder" else name
        if root:
            return Path(root).name
        return _override_value(self.overrides, "dataset") or self.shared.get("dataset", "unknown")

    @property
    def model(self) -> str:
        if self.record is not None:
            return self.record.model
        return _override_value(self.overrides, "model") or self.shared.get("model", "unknown")

    @property
    def variant(self) -> str:
        """The row name: the model, plus any other swept setting except dataset and seed."""
        extra = [
            o.split(".", 1)[-1] if o.startswith("model.") else o
            for o in self.overrides
            if "=" in o
            and not o.split("=", 1)[0].lstrip("+~").startswith(_NOT_VARIANT_KEYS)
            and o.split("=", 1)[0] in self.swept_keys
        ]
        return " ".join([self.model, *extra])

    def curves(self) -> list[dict[str, float]]:
        """Per-epoch curves: ``curves.csv`` if written, else derived from ``metrics.csv``."""
        return read_run_curves(self.run_dir)

    def roc(self) -> dict[str, Any] | None:
        """``roc.json`` (per-class, micro and macro ROC) if the run wrote one."""
        path = RunDir(self.run_dir).roc_json
        return json.loads(path.read_text()) if path.is_file() else None


def _override_value(overrides: Iterable[str], key: str) -> str | None:
    for o in overrides:
        k, _, v = o.partition("=")
        if k.lstrip("+~") == key:
            return v
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def load_cells(sweep_dir: Path) -> list[Cell]:
    """Every cell of ``sweep_dir``: from ``sweep.json``'s grid, else any job folder found."""
    if not sweep_dir.is_dir():
        raise FileNotFoundError(
            f"Sweep directory '{sweep_dir}' does not exist. Pass the folder a multirun wrote, "
            "e.g. outputs/multirun/<date>/<time>."
        )
    record = _read_json(sweep_dir / "sweep.json") or {}
    # A cell's own status.json is newer than sweep.json's snapshot (e.g. after a kill).
    job_dirs = {
        p.parents[len(Path(name).parts) - 1]
        for name in ("metrics.json", "status.json", ".hydra/overrides.yaml")
        for p in sweep_dir.glob(f"*/{name}")
    }
    cells = []
    for row in record.get("cells") or []:
        run_dir = sweep_dir / str(row.get("dir", row["job"]))
        status = _read_json(RunDir(run_dir).status_json) or {}
        cells.append(_cell(run_dir, {**row, **status}))
    for run_dir in sorted(job_dirs - {c.run_dir for c in cells}):
        cells.append(_cell(run_dir, _read_json(RunDir(run_dir).status_json) or {}))
    if not cells:
        raise FileNotFoundError(
            f"No runs found in '{sweep_dir}' (no sweep.json and no <job>/metrics.json). Is this "
            "the sweep's top folder?"
        )
    swept = _swept_keys(cells)
    finished = next((c for c in cells if c.complete), None)
    shared = {"model": finished.model, "dataset": finished.dataset} if finished else {}
    for cell in cells:
        cell.swept_keys = swept
        cell.shared = shared
    return cells


def _cell(run_dir: Path, row: dict[str, Any]) -> Cell:
    overrides = row.get("overrides")
    overrides_yaml = RunDir(run_dir).overrides_yaml
    if overrides is None and overrides_yaml.is_file():
        overrides = OmegaConf.to_container(OmegaConf.load(overrides_yaml))
    record = RunRecord.read_if_finished(run_dir)
    status = row.get("status") or ("completed" if record else "missing")
    if record is None and status in ("completed", "skipped"):
        status = "missing"  # sweep.json says done but the files are gone
    return Cell(
        job=row.get("job"),
        run_dir=run_dir,
        overrides=list(overrides or []),
        status=status if run_dir.is_dir() else "not started",
        error=row.get("error"),
        record=record,
    )


def _swept_keys(cells: list[Cell]) -> frozenset[str]:
    """Keys whose value differs between cells: these make up the grid."""
    values: dict[str, set[str]] = {}
    for cell in cells:
        for o in cell.overrides:
            key, _, value = o.partition("=")
            values.setdefault(key, set()).add(value)
    return frozenset(k for k, v in values.items() if len(v) > 1)


@dataclass
class Group:
    """The seeds of one variant on one dataset (complete cells only), plus how many are missing."""

    dataset: str
    variant: str
    cells: list[Cell]
    missing: int = 0

    def _values(self, key: str) -> list[float]:
        return [v for c in self.cells if (v := c.value(key)) is not None and math.isfinite(v)]

    def stat(self, key: str) -> tuple[float, float] | None:
        """Mean and sample standard deviation over seeds (std 0 for one seed); None if absent.
        Over the seeds that recorded ``key``: see :meth:`partial` for a mean of fewer."""
        values = self._values(key)
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return statistics.fmean(values), std

    def partial(self, key: str) -> str | None:
        """``"2 of 3 seeds"`` when only some of the group's runs recorded ``key`` (so its mean
        is over fewer seeds than the group has), else None."""
        have = len(self._values(key))
        return f"{have} of {len(self.cells)} seeds" if 0 < have < len(self.cells) else None


def partial_notes(
    groups: Iterable[Group], columns: dict[str, str], name: Callable[[str], str]
) -> list[str]:
    """One note per group and column averaged over fewer seeds than the group has."""
    notes = []
    for group in groups:
        for title, key in columns.items():
            if (partial := group.partial(key)) is not None:
                notes.append(
                    f"{name(group.variant)}: {title} is the mean of {partial} (the other runs "
                    "did not record it)."
                )
    return notes


def group_cells(cells: list[Cell]) -> dict[str, list[Group]]:
    """Per dataset, one group per variant in grid order."""
    groups: dict[tuple[str, str], Group] = {}
    for cell in cells:
        key = (cell.dataset, cell.variant)
        group = groups.setdefault(key, Group(dataset=key[0], variant=key[1], cells=[]))
        if cell.complete:
            group.cells.append(cell)
        else:
            group.missing += 1
    per_dataset: dict[str, list[Group]] = {}
    for group in groups.values():
        per_dataset.setdefault(group.dataset, []).append(group)
    return per_dataset
