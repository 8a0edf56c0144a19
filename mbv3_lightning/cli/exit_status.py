"""The exit statuses of a command that cannot finish (docs/reliability.md, "Exit status"), in a
module that imports nothing heavy, so the `mbv3` dispatcher and the compose-time checks use them
without loading torch. How each error maps to one is mbv3_lightning/cli/errors.py; a run
stopped by a signal exits runs.status.INTERRUPTED_EXIT_CODE (143)."""

from __future__ import annotations

import sys
from typing import NoReturn

# A user's mistake: a mistyped key or choice, a wrong path, a bad value, a refused resume.
USAGE_EXIT_CODE = 2
# The environment: a full disk, a read-only folder, a folder another process writes.
ENVIRONMENT_EXIT_CODE = 1


def usage_error(message: str) -> NoReturn:
    """End the command for a user's mistake: ``message`` on stderr, exit status 2 (as argparse
    does), no traceback."""
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(USAGE_EXIT_CODE)
