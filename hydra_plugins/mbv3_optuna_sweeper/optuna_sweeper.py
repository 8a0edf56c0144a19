"""The ``Sweeper`` Hydra instantiates for ``hydra/sweeper=optuna``.

Hydra imports every module of ``hydra_plugins`` when any command starts, so this one imports
nothing heavy: Optuna and the search code load when a search actually runs.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Runs an Optuna study as a multirun (``mbv3_lightning.sweeps.search.sweeper``)."""

    def __init__(self, **settings: Any) -> None:
        # The keys of conf/hydra/sweeper/optuna.yaml; checked by OptunaSearch's signature.
        self._settings = settings
        self._search: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from mbv3_lightning.extras import MissingExtraError, require_extra

        try:
            require_extra("search", "hydra/sweeper=optuna")
        except MissingExtraError as error:
            raise SystemExit(str(error)) from None
        from mbv3_lightning.sweeps.search.sweeper import OptunaSearch

        self._search = OptunaSearch(**self._settings)
        self._search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self._search.sweep(arguments)
