"""Where a command's log lines go: its log file in its output folder gets every INFO line, the
console only warnings, the progress bar and the command's own summary.

Under Hydra the logging config does this (``conf/hydra/default.yaml``: the console handler at
WARNING, the file handler at INFO); :func:`route_lightning_logs` makes Lightning's lines follow
it. The Python API runs without Hydra and gets the same split from :func:`run_log`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Lightning gives these loggers a console handler of their own when it is imported before
# logging is configured, and stops them passing their lines on (propagate=False).
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
# The loggers whose INFO lines belong in a run's log file.
RUN_LOGGERS = ("mbv3_lightning", "lightning")
# As Hydra's job logging writes them (hydra/job_logging/default.yaml).
LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"


def route_lightning_logs() -> None:
    """Send Lightning's lines through the handlers the command configured, and only those.

    Without this, "GPU available: ...", "Seed set to 42" and the like reach the console through
    Lightning's own handler (once more if the command's console also shows INFO), and never
    reach the command's log file.
    """
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


@contextmanager
def run_log(path: Path) -> Iterator[None]:
    """While a job of the Python API runs: the INFO lines of this package and Lightning into
    ``path``, their warnings on stderr, as ``mbv3 train`` does it; the logging set-up of the
    calling program (a notebook's, a script's) is restored afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    file = logging.FileHandler(path)
    file.setFormatter(logging.Formatter(LOG_FORMAT))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    loggers = [logging.getLogger(name) for name in (*RUN_LOGGERS, *LIGHTNING_LOGGERS[1:])]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    try:
        route_lightning_logs()
        for name in RUN_LOGGERS:
            logger = logging.getLogger(name)
            logger.setLevel(logging.INFO)
            logger.handlers = [file, console]
            # the caller's root handlers would print the INFO lines again
            logger.propagate = False
        yield
    finally:
        for logger, level, propagate, handlers in saved:
            logger.setLevel(level)
            logger.propagate = propagate
            logger.handlers = handlers
        file.close()
