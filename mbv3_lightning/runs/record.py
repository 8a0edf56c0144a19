"""The one typed, versioned record of a finished run, and the one function that builds it.

Training and the evaluation of a checkpoint both end in :func:`build_run_record`; the record
is written once as ``metrics.json`` (:func:`mbv3_lightning.runs.files.write_run_files`) and
read back with :meth:`RunRecord.read` by everything that looks at finished runs: a resumed
sweep, the sweep results and report, the W&B summary and the console table.

``metrics.json`` stays the flat dict other tools and the README know (``metrics``,
``best_epoch``, ``train_time_s``, ``params_total``, ...) plus ``schema_version``; files
written before ``schema_version`` existed read back through :func:`_upgrade`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbv3_lightning.runs.run_dir import RunDir

SCHEMA_VERSION = 1


@dataclass
class EvaluationReport:
    """The non-scalar test results of a run, as plain Python."""

    class_names: list[str]
    per_class: list[dict[str, Any]]  # {class, precision, recall, specificity, f1, support}
    roc: dict[str, Any]  # the roc.json structure: classes / micro / macro -> fpr, tpr, auc
    confusion: list[list[int]]  # counts, rows = true class, columns = predicted class


@dataclass
class Identity:
    """Which run this is: what was trained on what, and where its files are."""

    model: str
    dataset: str
    seed: int | None
    run_dir: str
    best_ckpt: str | None = None
    git_commit: str | None = None


@dataclass
class DataFacts:
    """The classes and images the run saw."""

    input_size: int | None = None
    num_classes: int | None = None
    class_names: list[str] = field(default_factory=list)
    skipped_images: int | None = None
    # The split the best checkpoint was evaluated on: "test", or "val" for a dataset without
    # a test split (the `test/...` metrics, per_class and figures then describe val).
    evaluated_split: str | None = None


@dataclass
class Cost:
    """Size and test-time speed of the network (``params`` etc. from ptflops' count)."""

    params_total: int | None = None
    params_trainable: int | None = None
    params: int | None = None
    macs: int | None = None
    flops: int | None = None
    test_ms_per_image: dict[str, float] | None = None  # {median, p95}
    test_images_per_s: float | None = None
    test_timing_batch_size: int | None = None
    # the paper's test time: the whole test set's prediction time / its number of images
    test_set_ms_per_image: float | None = None
    test_set_time_s: float | None = None
    test_set_images: int | None = None
    # the best checkpoint as an ExecuTorch .pte, batch 1 on pte_threads CPU threads
    # (pte_timing; mbv3_lightning/deploy/pte_latency.py)
    pte_ms_per_image: dict[str, float] | None = None  # {median, p95}
    pte_threads: int | None = None
    pte_size_mb: float | None = None


@dataclass
class Timings:
    """How long the run took and where training peaked."""

    epochs: int | None = None
    best_epoch: int | None = None
    train_time_s: float | None = None  # None when a checkpoint is only evaluated
    wall_time_s: float | None = None


@dataclass
class Environment:
    """Where the run ran."""

    device: str | None = None
    torch_threads: int | None = None
    versions: dict[str, str] = field(default_factory=dict)


# metrics.json's flat keys, in the order they have always been written, and their section.
_LAYOUT: tuple[tuple[str, str], ...] = (
    ("model", "identity"),
    ("dataset", "identity"),
    ("seed", "identity"),
    ("input_size", "data"),
    ("num_classes", "data"),
    ("class_names", "data"),
    ("skipped_images", "data"),
    ("epochs", "timings"),
    ("metrics", ""),
    ("params_total", "cost"),
    ("params_trainable", "cost"),
    ("train_time_s", "timings"),
    ("best_ckpt", "identity"),
    ("run_dir", "identity"),
    ("device", "environment"),
    ("torch_threads", "environment"),
    ("versions", "environment"),
    ("git_commit", "identity"),
    ("config", ""),
    ("best_epoch", "timings"),
    ("params", "cost"),
    ("macs", "cost"),
    ("flops", "cost"),
    ("test_ms_per_image", "cost"),
    ("test_images_per_s", "cost"),
    ("test_timing_batch_size", "cost"),
    ("per_class", ""),
    ("wall_time_s", "timings"),
    ("evaluated_split", "data"),
    ("test_set_ms_per_image", "cost"),
    ("test_set_time_s", "cost"),
    ("test_set_images", "cost"),
    ("pte_ms_per_image", "cost"),
    ("pte_threads", "cost"),
    ("pte_size_mb", "cost"),
)
# Written only when known: a DDP worker that measured nothing, a run without test images.
_OMITTED_WHEN_NONE = frozenset(
    {
        "params",
        "macs",
        "flops",
        "test_ms_per_image",
        "test_images_per_s",
        "test_timing_batch_size",
        "test_set_ms_per_image",
        "test_set_time_s",
        "test_set_images",
    }
)
_COST_ONLY_WHEN_MEASURED = ("test_ms_per_image", "test_images_per_s")
# Newer keys left out while unknown, so older files read back and write the same keys.
_NEWER_OMITTED_WHEN_NONE = frozenset(
    {"evaluated_split", "pte_ms_per_image", "pte_threads", "pte_size_mb"}
)


def _upgrade(data: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics.json of any earlier layout in today's key names (schema 1)."""
    data = dict(data)
    if "params" not in data and "params_total" in data:
        data["params"] = data["params_total"]  # before ptflops' count was recorded
    data.setdefault("metrics", {})
    data.setdefault("per_class", [])
    data["schema_version"] = SCHEMA_VERSION
    return data


@dataclass
class RunRecord:
    """A finished run: identity, config, metrics by stage, per-class table, cost, timings,
    environment. ``metrics`` keeps Lightning's ``stage/name`` keys (``test/acc``)."""

    identity: Identity
    data: DataFacts = field(default_factory=DataFacts)
    metrics: dict[str, float] = field(default_factory=dict)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] | None = None
    cost: Cost = field(default_factory=Cost)
    timings: Timings = field(default_factory=Timings)
    environment: Environment = field(default_factory=Environment)
    cost_measured: bool = True  # False on DDP workers that leave measuring to rank 0
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know
    schema_version: int = SCHEMA_VERSION

    # ---- convenience
    @property
    def model(self) -> str:
        return self.identity.model

    @property
    def dataset(self) -> str:
        return self.identity.dataset

    def metrics_by_stage(self) -> dict[str, dict[str, float]]:
        """``{"train": {"acc": ...}, "val": {...}, "test": {...}}`` from the flat metrics."""
        stages: dict[str, dict[str, float]] = {}
        for key, value in self.metrics.items():
            stage, sep, name = key.partition("/")
            stages.setdefault(stage if sep else "", {})[name if sep else key] = value
        return stages

    # ---- metrics.json
    def to_json(self) -> dict[str, Any]:
        """The flat ``metrics.json`` dict (today's keys, in their usual order)."""
        sections = {
            "identity": self.identity,
            "data": self.data,
            "cost": self.cost,
            "timings": self.timings,
            "environment": self.environment,
        }
        out: dict[str, Any] = {}
        for key, section in _LAYOUT:
            value = getattr(self, key) if not section else getattr(sections[section], key)
            if section == "cost" and key in _OMITTED_WHEN_NONE:
                if not self.cost_measured:
                    continue
                if value is None and key not in _COST_ONLY_WHEN_MEASURED:
                    continue
            if value is None and key in _NEWER_OMITTED_WHEN_NONE:
                continue
            out[key] = value
        out.update(self.extra)
        out["schema_version"] = self.schema_version
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Read a ``metrics.json`` dict, of this or an earlier layout."""
        data = _upgrade(data)
        known = {key for key, _ in _LAYOUT} | {"schema_version"}
        parts: dict[str, dict[str, Any]] = {
            s: {} for s in ("identity", "data", "cost", "timings", "environment")
        }
        for key, section in _LAYOUT:
            if section and key in data:
                parts[section][key] = data[key]
        parts["identity"].setdefault("model", "unknown")
        parts["identity"].setdefault("dataset", "unknown")
        parts["identity"].setdefault("seed", None)
        parts["identity"].setdefault("run_dir", "")
        return cls(
            identity=Identity(**parts["identity"]),
            data=DataFacts(**parts["data"]),
            metrics=dict(data.get("metrics") or {}),
            per_class=list(data.get("per_class") or []),
            config=data.get("config"),
            cost=Cost(**parts["cost"]),
            timings=Timings(**parts["timings"]),
            environment=Environment(**parts["environment"]),
            cost_measured=any(k in data for k in ("params", "macs", "test_ms_per_image")),
            extra={k: v for k, v in data.items() if k not in known},
            schema_version=int(data["schema_version"]),
        )

    @classmethod
    def read(cls, run_dir: RunDir | Path) -> RunRecord:
        """The record a finished run saved as ``metrics.json``."""
        return cls.from_json(json.loads(RunDir(Path(run_dir)).metrics_json.read_text()))

    @classmethod
    def read_if_finished(cls, run_dir: RunDir | Path) -> RunRecord | None:
        """The record, or ``None`` while the run has no (complete) ``metrics.json``."""
        try:
            return cls.read(run_dir)
        except (FileNotFoundError, json.JSONDecodeError):
            return None


def build_run_record(
    *,
    model: str,
    dataset: str,
    seed: int | None,
    run_dir: Path,
    input_size: int,
    class_names: Sequence[str],
    skipped_images: int,
    epochs: int | None,
    metrics: Mapping[str, float],
    parameter_counts: Mapping[str, int | None],
    train_time_s: float | None,
    best_ckpt: str | None,
    device: str,
    config: dict[str, Any] | None,
    best_epoch: int | None,
    cost: Mapping[str, Any] | None,
    per_class: Sequence[dict[str, Any]],
    started: float,
    evaluated_split: str | None = None,
) -> RunRecord:
    """The record of a run that has just been trained and/or tested (shared by training and
    the evaluation of a checkpoint). ``cost`` is ``None`` where it was not measured (DDP
    workers other than rank 0); ``started`` is the run's ``time.perf_counter()`` start."""
    # Imported here: reading records back (sweep resume, reports) needs neither torch nor
    # Lightning.
    import torch

    from mbv3_lightning.runs.environment import git_commit, software_versions

    return RunRecord(
        identity=Identity(
            model=model,
            dataset=dataset,
            seed=seed,
            run_dir=str(run_dir),
            best_ckpt=best_ckpt,
            git_commit=git_commit(),
        ),
        data=DataFacts(
            input_size=input_size,
            num_classes=len(class_names),
            class_names=list(class_names),
            skipped_images=skipped_images,
            evaluated_split=evaluated_split,
        ),
        metrics={k: float(v) for k, v in metrics.items()},
        per_class=list(per_class),
        config=config,
        cost=Cost(
            params_total=parameter_counts["params_total"],
            params_trainable=parameter_counts["params_trainable"],
            **(cost or {}),
        ),
        timings=Timings(
            epochs=epochs,
            best_epoch=best_epoch,
            train_time_s=None if train_time_s is None else round(train_time_s, 2),
            wall_time_s=round(time.perf_counter() - started, 2),
        ),
        environment=Environment(
            device=device,
            torch_threads=torch.get_num_threads(),
            versions=software_versions(),
        ),
        cost_measured=cost is not None,
    )
