"""`mbv3 profile model=<arch>`: an architecture's efficiency in one table.

Each job saves its row as ``profile.json`` next to the tables; with `-m model=a,b,c`
:class:`CombinedProfileTable` joins them for the whole sweep.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mbv3_lightning.cli.config import config_dir, register_resolvers

log = logging.getLogger(__name__)

register_resolvers()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="profile")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from mbv3_lightning.perf.profile import PROFILE_FILE, profile_model, save_tables

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    row = profile_model(cfg)
    (output_dir / PROFILE_FILE).write_text(json.dumps(row, indent=2))
    save_tables([row], output_dir)
    print(f"Profile tables saved in {output_dir}")  # the CLI's final summary


class CombinedProfileTable(Callback):
    """After `-m model=a,b,c`: one table of every job's row in the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from mbv3_lightning.perf.profile import PROFILE_FILE, save_tables

        sweep_dir = Path(config.hydra.sweep.dir)
        job_files = sorted(sweep_dir.glob(f"*/{PROFILE_FILE}"), key=lambda p: int(p.parent.name))
        if not job_files:
            log.warning("No %s found under %s; nothing to combine.", PROFILE_FILE, sweep_dir)
            return
        save_tables([json.loads(p.read_text()) for p in job_files], sweep_dir)


if __name__ == "__main__":
    main()
