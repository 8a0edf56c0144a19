"""`python -m mbv3_lightning.profile model=<arch>`: an architecture's efficiency in one table.

Each job saves its row as ``profile.json`` next to the tables; with `-m model=a,b,c`
:class:`mbv3_lightning.perf.profile.CombinedProfileTable` joins them for the whole sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mbv3_lightning.config import config_dir, register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="profile")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from mbv3_lightning.perf.profile import PROFILE_FILE, profile_model, save_tables

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    row = profile_model(cfg)
    (output_dir / PROFILE_FILE).write_text(json.dumps(row, indent=2))
    save_tables([row], output_dir)


if __name__ == "__main__":
    main()
