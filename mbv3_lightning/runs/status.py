"""``status.json``: what a training run (or sweep cell) is doing, readable while it runs.

``running`` while it trains, then ``completed``, ``skipped`` (a sweep cell that had finished),
``failed`` (with the error), ``interrupted`` (stopped by a signal, resumable from its
``last.ckpt``) or ``pruned`` (a search trial its study's pruner stopped, a normal end). A sweep
cell's record also holds its job number, overrides and earlier attempts.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mbv3_lightning.runs.run_dir import RunDir, write_json_atomic

log = logging.getLogger(__name__)

STATES = ("running", "completed", "skipped", "failed", "interrupted", "pruned")

# Exit status of a run stopped by a signal: 128 + SIGTERM's number, as a shell reports it.
INTERRUPTED_EXIT_CODE = 128 + signal.SIGTERM


class RunInterrupted(Exception):
    """A signal stopped the run; it continues from ``ckpt_path`` (None: from the start).

    ``requeue``: the launcher's handler to call once the interruption is recorded (submitit's
    checkpoint-and-requeue), or None.
    """

    def __init__(
        self,
        signal_name: str,
        ckpt_path: Path | None,
        where: str,
        requeue: Callable[[], None] | None = None,
    ) -> None:
        self.signal_name, self.ckpt_path, self.where, self.requeue = (
            signal_name,
            ckpt_path,
            where,
            requeue,
        )
        saved = f"saved {ckpt_path}" if ckpt_path else "no checkpoint to resume from yet"
        super().__init__(f"Interrupted by {signal_name} {where}; {saved}.")


def now_iso() -> str:
    """The current UTC time, to the second, as status files record it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``status.json``, or None when absent or unreadable (a file cut short)."""
    try:
        data = json.loads(RunDir(Path(run_dir)).status_json.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


class RunStatus:
    """The ``status.json`` of one run folder, rewritten atomically at each change of state."""

    def __init__(self, run_dir: str | Path, *, write: bool = True, **fields: Any) -> None:
        """``write=False``: keep the state without writing it (the other processes of a
        distributed run, whose rank 0 writes the run's files)."""
        self.path = RunDir(Path(run_dir)).status_json
        self.write = write
        self.record: dict[str, Any] = dict(fields)
        self._started: float | None = None

    def start(self, **fields: Any) -> None:
        """``running``, with this process and the start time."""
        self._started = time.perf_counter()
        self.record.update(
            status="running",
            started_at=now_iso(),
            host=socket.gethostname(),
            pid=os.getpid(),
            **fields,
        )
        if self.write:
            write_json_atomic(self.path, self.record)

    def end(self, status: str, **fields: Any) -> None:
        """A final state (``completed``, ``skipped``, ``failed``, ``interrupted``)."""
        if status not in STATES:
            raise ValueError(f"Unknown run status {status!r}; one of {', '.join(STATES)}.")
        duration = time.perf_counter() - self._started if self._started is not None else None
        self.record.update(status=status, ended_at=now_iso(), **fields)
        if duration is not None:
            self.record["duration_s"] = round(duration, 2)
        if self.write:
            write_json_atomic(self.path, self.record)

    def end_after_error(self, status: str, **fields: Any) -> None:
        """:meth:`end` while an error is being raised: a failure to write the state (the disk
        that failed the run may be full) is logged, so it never hides that error."""
        if self.status != "running":
            return
        try:
            self.end(status, **fields)
        except OSError as error:
            log.warning("Could not record the run as %s: %s", status, error)

    @property
    def status(self) -> str | None:
        return self.record.get("status")
