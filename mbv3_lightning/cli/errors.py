"""How a command ends when it cannot finish: one clear message and an exit status, no traceback.

A user's mistake (a refused resume, an unsafe checkpoint, a bad config value) exits 2, as a
usage error does; the environment (a full disk, a read-only folder, a folder another process
writes) exits 1; a run stopped by a signal exits 143 (128 + SIGTERM) after saying how to
resume. Anything else is a bug and keeps Hydra's traceback. The statuses are
mbv3_lightning/cli/exit_status.py; mistakes found before the job starts (a typo, a wrong path)
end there, in the dispatcher and the ConfigCheck callback.
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from mbv3_lightning.cli.config_check import ConfigError
from mbv3_lightning.cli.exit_status import ENVIRONMENT_EXIT_CODE, USAGE_EXIT_CODE
from mbv3_lightning.data.images import UnreadableImageError
from mbv3_lightning.data.split_manifest import SplitManifestError
from mbv3_lightning.extras import MissingExtraError
from mbv3_lightning.models.safe_load import UnsafeCheckpointError
from mbv3_lightning.runs.lock import RunLockedError
from mbv3_lightning.runs.resume import ResumeMismatchError
from mbv3_lightning.runs.run_dir import RunFileWriteError
from mbv3_lightning.runs.status import INTERRUPTED_EXIT_CODE, RunInterrupted

F = TypeVar("F", bound=Callable[..., Any])

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    UnsafeCheckpointError,
    ResumeMismatchError,
    SplitManifestError,
)
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (
    MissingExtraError,
    UnreadableImageError,
    RunFileWriteError,
    RunLockedError,
    PermissionError,
)


def _resume_command(error: RunInterrupted) -> str:
    """The command that continues an interrupted run (or, under -m, its sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    overrides = list(hydra.overrides.task) if hydra is not None else []
    command = ["mbv3", "train"]
    if hydra is not None and hydra.mode == RunMode.MULTIRUN:
        # the sweep's own command line (a cell's overrides are one point of its grid)
        argv = [a for a in sys.argv[1:] if not a.startswith(("sweep.resume", "hydra.sweep.dir"))]
        resume = ["sweep.resume=true", f"hydra.sweep.dir={hydra.sweep.dir}"]
        return shlex.join([*command, *argv, *resume])
    kept = [o for o in overrides if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    if error.ckpt_path is None:
        return shlex.join([*command, *kept])
    return shlex.join([*command, *kept, f"ckpt_path={error.ckpt_path}"])


def reports_errors(command: str) -> Callable[[F], F]:
    """Decorate a command's Hydra task function so the errors above end it cleanly."""

    def decorate(task: F) -> F:
        @functools.wraps(task)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return task(*args, **kwargs)
            except RunInterrupted as error:
                print(
                    f"mbv3 {command}: {error}\nResume with: {_resume_command(error)}",
                    file=sys.stderr,
                    flush=True,
                )
                if error.requeue is not None:
                    error.requeue()  # the launcher requeues the job (and exits)
                raise SystemExit(INTERRUPTED_EXIT_CODE) from None
            except USER_ERRORS as error:
                print(f"mbv3 {command}: {error}", file=sys.stderr)
                raise SystemExit(USAGE_EXIT_CODE) from None
            except ENVIRONMENT_ERRORS as error:
                print(f"mbv3 {command}: {error}", file=sys.stderr)
                raise SystemExit(ENVIRONMENT_EXIT_CODE) from None

        return wrapper  # type: ignore[return-value]

    return decorate
