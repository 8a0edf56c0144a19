"""Decide whether W&B runs online: only when the user is logged in, never by surprise."""

from __future__ import annotations

import netrc
import os
from pathlib import Path


def wandb_logged_in() -> bool:
    """True when an API key is available (``WANDB_API_KEY`` or ``wandb login``'s netrc entry)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc_file = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        hosts = netrc.netrc(netrc_file).hosts
    except (FileNotFoundError, netrc.NetrcParseError, PermissionError):
        return False
    base_url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    host = base_url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    return host in hosts


def wandb_offline() -> bool:
    """Offline unless logged in; an explicit ``WANDB_MODE`` always wins."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode in ("offline", "dryrun", "disabled")
    return not wandb_logged_in()
