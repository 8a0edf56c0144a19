"""What a (re)started run does with the files already in its directory: skip, resume or start.

Training asks this before it starts (``sweep.resume=true``), and so does a sweep cell when it
records its state, so both decide from the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mbv3_lightning.runs.record import RunRecord
from mbv3_lightning.runs.run_dir import RunDir


@dataclass(frozen=True)
class ResumePlan:
    """What a (re)started cell does: ``fresh``, ``resume`` from ``ckpt_path``, or ``skip``."""

    action: str
    ckpt_path: Path | None = None


def plan_resume(run_dir: Path, resume: bool) -> ResumePlan:
    """Decide from the files in ``run_dir`` whether a cell is skipped, resumed or run afresh."""
    if not resume:
        return ResumePlan("fresh")
    files = RunDir(run_dir)
    if files.holds_finished_run():
        return ResumePlan("skip")
    if files.last_ckpt.is_file():
        return ResumePlan("resume", files.last_ckpt)
    return ResumePlan("fresh")


def load_completed_summary(run_dir: Path) -> RunRecord:
    """The record a finished cell saved as ``metrics.json``."""
    return RunRecord.read(run_dir)
