"""Every path of a run directory, and the one way files get into it: atomically.

A reader (a resumed sweep, the report, a second process) must never see half a file, and a
file that exists must be complete; so each file is written under a temporary name in the same
folder and renamed into place. ``metrics.json`` is written last: its presence means the run is
complete (see :mod:`mbv3_lightning.runs.resume`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class RunFileWriteError(OSError):
    """A file could not be written into a run folder; the previous version, if any, is intact."""


def _free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:,.1f} MiB free"
    except OSError:
        return "free space unknown"


def write_atomic(path: Path, content: str | bytes | memoryview | Callable[[Path], None]) -> None:
    """Write ``content`` (text, bytes, or a function that writes the file it is given) to
    ``path`` through a temporary file in the same folder, flushed to disk and renamed, so no
    reader sees a partial file and a failed write (a full disk, a file-size limit) leaves the
    previous file as it was. A failure is a :class:`RunFileWriteError` naming the file, its
    folder and the free space there."""
    # The process id keeps concurrent writers apart; the name stays last, so a writer that
    # picks its format from the extension (matplotlib's .png) still sees it.
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(tmp)
        else:
            with open(tmp, "wb") as file:
                file.write(content.encode() if isinstance(content, str) else content)
        with open(tmp, "rb+") as file:  # on disk before the rename makes it the file
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as error:
        reason = error.strerror or str(error)
        raise RunFileWriteError(
            error.errno,
            f"Could not write '{path}': {reason}. '{path.parent}' has {_free_space(path.parent)}; "
            f"the previous '{path.name}', if any, is unchanged. Free some space or choose "
            "another output folder (hydra.run.dir=...)",
        ) from error
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any, indent: int | None = 2) -> None:
    """JSON through :func:`write_atomic`."""
    write_atomic(path, json.dumps(data, indent=indent))


@dataclass(frozen=True)
class RunDir:
    """The files one run (a training run, an evaluation, one sweep cell) keeps in its folder."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of_checkpoint(cls, ckpt_path: str | Path) -> RunDir:
        """The run a checkpoint belongs to: ``<run dir>/checkpoints/<name>.ckpt``."""
        return cls(Path(ckpt_path).resolve().parent.parent)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # results, written by runs/files.py (metrics.json last)
    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def curves_csv(self) -> Path:
        return self.path / "curves.csv"

    @property
    def curves_png(self) -> Path:
        return self.path / "curves.png"

    @property
    def per_class_csv(self) -> Path:
        return self.path / "per_class.csv"

    @property
    def per_class_epochs_csv(self) -> Path:
        return self.path / "per_class_epochs.csv"

    @property
    def epoch_confusions_json(self) -> Path:
        return self.path / "epoch_confusions.json"

    def confusion_png_of(self, stage: str) -> Path:
        """The best epoch's train or val confusion matrix (``confusion_train.png``)."""
        return self.path / f"confusion_{stage}.png"

    @property
    def roc_json(self) -> Path:
        return self.path / "roc.json"

    @property
    def roc_png(self) -> Path:
        return self.path / "roc.png"

    @property
    def confusion_png(self) -> Path:
        return self.path / "confusion.png"

    # written during the run: Lightning's CSV log and checkpoints, the DataModule's split lists
    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.ckpt"

    @property
    def split_manifest(self) -> Path:
        return self.path / "split_manifest.json"

    @property
    def class_indices(self) -> Path:
        return self.path / "class_indices.json"

    # a sweep cell's state, and Hydra's record of the composed config
    @property
    def status_json(self) -> Path:
        return self.path / "status.json"

    @property
    def traceback_txt(self) -> Path:
        return self.path / "traceback.txt"

    def earlier_traceback(self, attempt: int) -> Path:
        """Where a cell keeps the traceback of an earlier failed attempt."""
        return self.path / f"traceback.attempt{attempt}.txt"

    @property
    def hydra_dir(self) -> Path:
        return self.path / ".hydra"

    @property
    def overrides_yaml(self) -> Path:
        return self.hydra_dir / "overrides.yaml"

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / "best.ckpt"

    def holds_finished_run(self) -> bool:
        return self.metrics_json.is_file()

    def run_files(self) -> list[str]:
        """The files that show a run already wrote here (relative names); empty for a new folder.

        Hydra's own ``.hydra/`` and ``train.log`` do not count: Hydra writes them for the job
        that is starting before the job checks its folder.
        """
        found = [self.metrics_json, self.metrics_csv]
        found += sorted(self.checkpoints.glob("*.ckpt")) if self.checkpoints.is_dir() else []
        return [str(p.relative_to(self.path)) for p in found if p.is_file()]


def checkpoint_run_dir(ckpt_path: str | Path) -> Path | None:
    """The run folder a checkpoint was saved in (``<run>/checkpoints/x.ckpt``), if it is one."""
    path = Path(ckpt_path)
    if path.parent.name != "checkpoints" or not path.is_file():
        return None
    run = RunDir.of_checkpoint(path)
    return run.path if (run.metrics_csv.is_file() or run.hydra_dir.is_dir()) else None


def claim_run_dir(base: str | Path) -> Path:
    """Create ``base`` (or ``base-1``, ``base-2``, ... if taken) and return it.

    ``mkdir`` without ``exist_ok`` is atomic: of several jobs started in the same second, each
    gets its own folder, however they interleave.
    """
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    for number in range(100_000):
        candidate = base if number == 0 else base.with_name(f"{base.name}-{number}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"No free run folder next to '{base}'; clean up '{base.parent}'.")


def run_dir_for(ckpt_path: str | None, base: str) -> str:
    """The folder a training job writes to: the checkpoint's own run folder when resuming an
    unfinished run, otherwise ``base`` (claimed, with a suffix if taken, when the job starts:
    see :func:`claim_run_dir` and ``cli/run_guard.py``).

    Training's ``hydra.run.dir`` is ``${run_dir:${ckpt_path},<base>}``. No side effects here:
    Hydra also resolves the key while it merges configs.
    """
    if ckpt_path:
        source = checkpoint_run_dir(ckpt_path)
        if source is not None and not RunDir(source).holds_finished_run():
            return str(source)
    return str(base)


def check_run_target(output_dir: str | Path, ckpt_path: str | Path | None) -> None:
    """Refuse a job whose folder would mix two runs or overwrite a finished one.

    A new run needs a folder without run files; a resumed one its checkpoint's own unfinished
    folder, or a folder without run files.
    """
    target = RunDir(Path(output_dir))
    existing = target.run_files()
    if not existing:
        return
    if ckpt_path is None:
        resume = (
            f"Resume it with `ckpt_path={target.last_ckpt}` (without hydra.run.dir), or pick"
            if target.last_ckpt.is_file() and not target.holds_finished_run()
            else "Pick"
        )
        raise FileExistsError(
            f"Run directory '{target.path}' already holds a run ({', '.join(existing)}). "
            f"{resume} a new directory with `hydra.run.dir=...`."
        )
    source = checkpoint_run_dir(ckpt_path)
    same = source is not None and source.resolve() == target.path.resolve()
    if same and not target.holds_finished_run():
        return
    if same:
        raise FileExistsError(
            f"'{target.path}' holds a finished run (metrics.json); continuing it there would "
            f"overwrite its results. Leave out hydra.run.dir to continue `{ckpt_path}` in a new "
            "folder, or pass `hydra.run.dir=<new folder>`."
        )
    raise FileExistsError(
        f"'{target.path}' holds another run ({', '.join(existing)}); resuming '{ckpt_path}' "
        "there would mix two runs. Leave out hydra.run.dir (a resume continues in the "
        "checkpoint's own folder) or pass `hydra.run.dir=<new folder>`."
    )


def write_job_config(run_dir: RunDir, config: Any, hydra_config: Any | None) -> None:
    """``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``: the record Hydra keeps of
    a job, written by the job itself once its folder is locked and checked (training sets
    ``hydra.output_subdir: null``), so a refused or second writer leaves the folder as it was.
    ``hydra_config``: Hydra's runtime config (``HydraConfig.get()``), None outside Hydra."""
    from omegaconf import OmegaConf

    write_atomic(run_dir.hydra_dir / "config.yaml", OmegaConf.to_yaml(config))
    if hydra_config is not None:
        write_atomic(run_dir.hydra_dir / "hydra.yaml", OmegaConf.to_yaml({"hydra": hydra_config}))
        write_atomic(run_dir.overrides_yaml, OmegaConf.to_yaml(hydra_config.overrides.task))
