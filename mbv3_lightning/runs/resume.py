"""What a (re)started run does with the files already in its directory: skip, resume or start.

Training asks this before it starts (``sweep.resume=true``), and so does a sweep cell when it
records its state, so both decide from the same files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbv3_lightning.runs.record import RunRecord
from mbv3_lightning.runs.run_dir import RunDir
from mbv3_lightning.runs.status import read_status


@dataclass(frozen=True)
class ResumePlan:
    """What a (re)started cell does: ``fresh``, ``resume`` from ``ckpt_path``, or ``skip``."""

    action: str
    ckpt_path: Path | None = None


def plan_resume(run_dir: Path, resume: bool) -> ResumePlan:
    """Decide from the files in ``run_dir`` whether a cell is skipped, resumed or run afresh.

    A sweep cell that a signal interrupted resumes from its ``last.ckpt`` even without
    ``resume``: that is how a requeued SLURM job (submitit) continues its cell.
    """
    files = RunDir(run_dir)
    status = read_status(run_dir) or {}
    interrupted_cell = status.get("status") == "interrupted" and "job" in status
    if not resume and not (interrupted_cell and files.last_ckpt.is_file()):
        return ResumePlan("fresh")
    if files.holds_finished_run():
        return ResumePlan("skip")
    if files.last_ckpt.is_file():
        return ResumePlan("resume", files.last_ckpt)
    return ResumePlan("fresh")


def load_completed_record(run_dir: Path) -> RunRecord:
    """The record a finished cell saved as ``metrics.json``."""
    return RunRecord.read(run_dir)


class ResumeMismatchError(ValueError):
    """The command that resumes a run differs from the run it would continue."""


# Network arguments a checkpoint stores as False/None whatever the run used: its own weights
# replace them (see ImageClassifier.on_save_checkpoint).
_RESET_IN_CHECKPOINTS = ("pretrained", "weights_path")


def resume_differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """What differs between a checkpoint's checked hyper-parameters and those the resuming
    command would train with, one ``key: checkpoint ..., now ...`` line each."""
    lines = []
    saved_net = {k: v for k, v in saved["net"].items() if k not in _RESET_IN_CHECKPOINTS}
    now_net = {k: v for k, v in now["net"].items() if k not in _RESET_IN_CHECKPOINTS}
    for key in sorted(set(saved_net) | set(now_net)):
        if saved_net.get(key) != now_net.get(key):
            then, now_value = saved_net.get(key), now_net.get(key)
            lines.append(f"model.net.{key}: {then!r} in the checkpoint, now {now_value!r}")
    for key, name in (("input_size", "model.input_size"), ("freeze", "model.freeze")):
        if saved.get(key) != now.get(key):
            lines.append(f"{name}: {saved.get(key)!r} in the checkpoint, now {now.get(key)!r}")
    if list(saved.get("class_names") or []) != list(now.get("class_names") or []):
        before, after = saved.get("class_names") or [], now.get("class_names") or []
        if sorted(before) == sorted(after):
            lines.append("classes: the same names in another label order")
        else:
            lines.append(
                f"classes: only in the checkpoint {sorted(set(before) - set(after))}, "
                f"only now {sorted(set(after) - set(before))}"
            )
    for key in ("optimizer", "scheduler"):
        target_then = (saved.get(key) or {}).get("_target_")
        target_now = (now.get(key) or {}).get("_target_")
        if target_then != target_now:
            lines.append(f"{key}: {target_then} in the checkpoint, now {target_now}")
    return lines


def check_resume(ckpt_path: Path, saved: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Refuse, naming every difference, a resume whose model or classes differ from the run
    it continues (its optimiser state and output layer would not fit, or fit silently wrong)."""
    differences = resume_differences(saved, now)
    if differences:
        listed = "\n".join(f"  {line}" for line in differences)
        raise ResumeMismatchError(
            f"Cannot resume '{ckpt_path}': this command trains something else than the run "
            f"it would continue:\n{listed}\nResume with the run's own overrides (its "
            "`.hydra/overrides.yaml`), or start a new run from its weights with "
            f"`model.net.weights_path={ckpt_path}`."
        )
