"""One writer per run folder: an exclusive lock held for the life of the job that writes it.

Two processes writing one run (two resumes of the same ``last.ckpt``, two ``sweep.resume=true``
processes on one sweep) interleave their ``metrics.csv`` rows and checkpoints. Each writer
holds ``<folder>/.lock`` with ``flock``, which the kernel releases when the process ends,
``kill -9`` included, so a crashed job never leaves a stale lock. The lock file names its
holder (host, pid, start time) for the refusal message. ``flock`` works on local disks and on
NFS v4; on file systems without it the lock cannot protect the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process is writing this run folder."""

    def __init__(self, folder: Path, holder: dict[str, Any]) -> None:
        self.folder, self.holder = folder, holder
        who = (
            f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(since {holder.get('since', '?')})"
            if holder
            else "another process"
        )
        super().__init__(
            f"'{folder}' is being written by {who}. One process writes a run at a time: wait "
            "for it to finish (or stop it), or choose another folder."
        )


# Locks this process holds, by folder: taking one again nests (a sweep cell, then its run).
_held: dict[Path, tuple[IO[str], int]] = {}


def _holder(file: IO[str]) -> dict[str, Any]:
    file.seek(0)
    try:
        data = json.loads(file.read() or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def lock_holder(folder: str | Path) -> dict[str, Any] | None:
    """Who holds ``folder``'s lock now (host, pid, since), or None when nobody does."""
    path = Path(folder) / LOCK_NAME
    if Path(folder).resolve() in _held:
        return {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        file = open(path)  # noqa: SIM115 - closed below, after the probe
    except FileNotFoundError:
        return None
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(file)
        fcntl.flock(file, fcntl.LOCK_UN)
        return None


@contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold ``folder``'s writer lock for the ``with`` block, or raise :class:`RunLockedError`
    naming the process that holds it. Re-entrant within one process."""
    key = Path(folder).resolve()
    if key in _held:
        file, depth = _held[key]
        _held[key] = (file, depth + 1)
        try:
            yield key
        finally:
            file, depth = _held[key]
            _held[key] = (file, depth - 1)
        return
    key.mkdir(parents=True, exist_ok=True)
    file = open(key / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the block's life
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(file)
        file.close()
        raise RunLockedError(key, holder) from None
    file.seek(0)
    file.truncate()
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    json.dump(
        {"host": socket.gethostname(), "pid": os.getpid(), "since": since, "command": command},
        file,
    )
    file.flush()
    _held[key] = (file, 1)
    try:
        yield key
    finally:
        del _held[key]
        fcntl.flock(file, fcntl.LOCK_UN)
        file.close()


@contextmanager
def exclusive_update(path: str | Path) -> Iterator[None]:
    """Wait for, then hold, the lock of a file that several processes read, change and write
    back (a sweep's ``sweep.json``): one read-modify-write at a time."""
    lock_path = Path(path).with_name(f".{Path(path).name}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)
