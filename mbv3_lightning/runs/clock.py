"""Durations as people read them on the console: ``0:09``, ``12:34``, ``1:02:03``."""

from __future__ import annotations

import math


def clock(seconds: float | None) -> str:
    """``m:ss`` under an hour, ``h:mm:ss`` from then on; ``-:--`` when not known yet."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-:--"
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
