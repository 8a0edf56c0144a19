"""Where a study's trials are kept: a file in its sweep folder, or a database URL.

``hydra.sweeper.storage``:

- ``sqlite`` (or ``null``): ``<sweep dir>/optuna.db``, an Optuna RDB storage in SQLite. The
  dashboard, the ``optuna`` command and ``optuna.load_study`` open it as they are.
- ``journal``: ``<sweep dir>/optuna.journal``, Optuna's journal file storage. SQLite relies on
  ``fcntl`` locks that many network file systems break; the journal takes its lock by
  creating a file exclusively (``open(O_EXCL)``), which NFS v3 and later do atomically.
- a database URL (``postgresql://...``, ``mysql://...``, ``sqlite:////abs/path.db``) shared by
  several machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage

SQLITE_FILE = "optuna.db"
JOURNAL_FILE = "optuna.journal"
LOCK_FILE = ".study.lock"
# A writer holds SQLite's lock for milliseconds; several trial processes reporting at once
# queue behind it for up to this long instead of failing with "database is locked".
SQLITE_TIMEOUT_S = 60


class StorageError(ValueError):
    """A ``storage`` setting that names no storage the search can open."""


@dataclass(frozen=True)
class StorageSpec:
    """A resolved ``hydra.sweeper.storage``: what kind, and its file or URL."""

    kind: str  # "sqlite" | "journal" | "url"
    location: str  # a file path for sqlite/journal, else the URL

    @property
    def url(self) -> str:
        """What Optuna's tools take: ``sqlite:///<file>``, the journal file, or the URL."""
        return f"sqlite:///{self.location}" if self.kind == "sqlite" else self.location

    @property
    def display(self) -> str:
        """The location for logs and files, without a database password."""
        if self.kind != "url":
            return self.location
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.location).render_as_string(hide_password=True)
        except Exception:  # not an SQLAlchemy URL: keep only its scheme
            return self.location.split("://", 1)[0] + "://..."


def storage_spec(setting: str | None, sweep_dir: Path) -> StorageSpec:
    """Resolve ``hydra.sweeper.storage`` against the sweep folder."""
    value = "sqlite" if setting in (None, "") else str(setting)
    if value == "sqlite":
        return StorageSpec("sqlite", str((sweep_dir / SQLITE_FILE).resolve()))
    if value == "journal":
        return StorageSpec("journal", str((sweep_dir / JOURNAL_FILE).resolve()))
    if "://" in value:
        return StorageSpec("url", value)
    raise StorageError(
        f"hydra.sweeper.storage={value}: use sqlite (<sweep dir>/{SQLITE_FILE}), journal "
        f"(<sweep dir>/{JOURNAL_FILE}, for network file systems) or a database URL such as "
        "postgresql://user@host/db."
    )


def open_storage(spec: StorageSpec, *, create: bool = True) -> BaseStorage:
    """The storage ``spec`` names. ``create=False`` only reads: tables are not created and a
    missing file is an error rather than a new, empty study."""
    quiet_storage_logs()
    if spec.kind in ("sqlite", "journal") and not create and not Path(spec.location).is_file():
        raise FileNotFoundError(f"No study storage at {spec.location}.")
    if spec.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        Path(spec.location).parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(spec.location, lock_obj=JournalFileOpenLock(spec.location))
        return optuna.storages.JournalStorage(backend)
    engine_kwargs = {}
    if spec.url.startswith("sqlite:"):
        if spec.kind == "sqlite":
            Path(spec.location).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    return optuna.storages.RDBStorage(
        spec.url, engine_kwargs=engine_kwargs, skip_table_creation=not create
    )


def lock_path(spec: StorageSpec, sweep_dir: Path) -> Path:
    """The file :func:`study_lock` locks: beside a storage file, so every process using that
    file shares it whatever its sweep folder; the sweep folder's for a database server."""
    if spec.kind in ("sqlite", "journal"):
        return Path(f"{spec.location}.study-lock")
    if spec.url.startswith("sqlite:///"):
        return Path(f"{spec.url.removeprefix('sqlite:///')}.study-lock")
    return sweep_dir / LOCK_FILE


@contextlib.contextmanager
def study_lock(path: Path) -> Iterator[None]:
    """Serialise the study's bookkeeping (its trial budget, claiming and taking up trials)
    between processes. SQLite needs it: Python's sqlite3 reads outside a transaction, so two
    processes can both see a trial waiting and both switch it to running. (A database server
    locks the row, and the journal storage orders its writes, so for them it only keeps the
    taking up of abandoned trials in one process at a time.) The kernel drops the lock when
    its holder dies, ``kill -9`` included, so a crash never leaves it held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def quiet_storage_logs() -> None:
    """Route Optuna's messages through ``logging`` (Hydra's console and log files) instead of
    its own coloured handler, and keep Alembic's schema chatter ("setup plugin ...",
    "Context impl SQLiteImpl") out of the console."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    logging.getLogger("alembic").setLevel(logging.WARNING)
