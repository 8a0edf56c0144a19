"""Whether a run times its best checkpoint as an ExecuTorch ``.pte`` after the test, and how
(``pte_timing`` in conf/train.yaml): for ``mbv3 train``, its sweeps and search trials, and the
Python API's ``train`` alike.

On when ``pte_timing.enabled`` or when a search's objective names ``pte_ms_per_image``. The
checks that would otherwise fail after training (no test, no ExecuTorch) fail before it.
Imports nothing heavy until a run asks for the timing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

if TYPE_CHECKING:
    from mbv3_lightning.training.run import DeployCost


def _search_objectives(hydra_cfg: Any) -> list[str]:
    """The objectives of a `hydra/sweeper=optuna` study this job is a trial of, else []."""
    from mbv3_lightning.sweeps.search import SWEEPER_TARGET  # a constant: imports no Optuna

    if hydra_cfg.sweeper.get("_target_") != SWEEPER_TARGET:
        return []
    objective = hydra_cfg.sweeper.get("objective")
    return [objective] if isinstance(objective, str) else [str(o) for o in objective or []]


def pte_cost(cfg: DictConfig, hydra_cfg: Any) -> DeployCost | None:
    """The .pte latency to measure after the test, for :func:`training.run.run`; None when
    the run does not ask for it. ``hydra_cfg``: the job's Hydra config (its sweeper)."""
    from mbv3_lightning.cli.config_check import ConfigError
    from mbv3_lightning.sweeps.search.objectives import PTE_OBJECTIVE

    timing = cfg.pte_timing
    if not (timing.enabled or PTE_OBJECTIVE in _search_objectives(hydra_cfg)):
        return None
    if not cfg.test:
        raise ConfigError(
            "pte_timing times the best checkpoint on a test image after the test; it needs "
            "test=true."
        )
    from mbv3_lightning.deploy.pte_latency import TASK, pte_latency
    from mbv3_lightning.extras import require_extra

    require_extra("mobile", TASK, ("executorch",))  # before training, not after it
    threads, runs, warmup = int(timing.threads), int(timing.runs), int(timing.warmup)
    return lambda net, images: pte_latency(net, images, threads=threads, runs=runs, warmup=warmup)
