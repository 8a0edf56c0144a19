"""Optimisers and learning-rate schedules from ``_partial_`` Hydra nodes.

``conf/optimizer/*.yaml`` and ``conf/scheduler/*.yaml`` are ``_target_`` nodes with
``_partial_: true``: instantiating one gives a factory that still lacks the parameters (for
an optimiser) or the optimiser and the run's step counts (for a schedule). The LightningModule
completes them in ``configure_optimizers`` through :func:`make_optimizer` and
:func:`make_scheduler`, so any ``torch.optim`` class (or any callable taking ``params``) works
from the command line: ``optimizer._target_=torch.optim.RMSprop +optimizer.alpha=0.9``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

log = logging.getLogger(__name__)

# Devices with fused optimiser kernels (SGD, Adam, AdamW, ...) that this project targets.
FUSED_DEVICES = ("cpu", "cuda")
# What the module supplies to a schedule factory that asks for it by name.
SCHEDULE_CONTEXT = ("total_steps", "steps_per_epoch")


def node_factory(node: Mapping[str, Any] | Callable[..., Any]) -> Callable[..., Any]:
    """A ``_partial_`` config node (as saved in hyper-parameters) -> its factory, a
    ``functools.partial`` of the ``_target_`` with the node's other values.

    Not Hydra's ``instantiate``: these nodes are saved in checkpoints, and ``instantiate``
    would call any ``_target_`` nested in their values; here a nested node is an error. A
    callable (e.g. ``functools.partial(torch.optim.SGD, lr=0.1)``) is returned as it is.
    """
    if callable(node):
        return node
    from hydra.utils import get_object
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        node = cast(dict[str, Any], OmegaConf.to_container(node, resolve=True))
    values = {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}
    nested = [k for k, v in values.items() if isinstance(v, Mapping)]
    if nested:
        raise ValueError(
            f"{node['_target_']}: {', '.join(nested)} must be plain values, not config nodes."
        )
    return functools.partial(get_object(str(node["_target_"])), **values)


def _accepts(factory: Callable[..., Any], name: str) -> bool:
    target = factory.func if isinstance(factory, functools.partial) else factory
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters


def _bound(factory: Callable[..., Any]) -> dict[str, Any]:
    return dict(factory.keywords) if isinstance(factory, functools.partial) else {}


def make_optimizer(
    factory: Callable[..., Optimizer], params: Iterable[torch.nn.Parameter]
) -> Optimizer:
    """Call an optimiser factory with ``params``, choosing the fused kernel where it exists.

    torch's fused implementation (one kernel for all parameters) is used when the class
    accepts ``fused`` and every parameter is on a device that has it: one kernel for the
    whole step instead of a loop over parameters, several times faster for the MobileNets'
    many small tensors (benchmarks/results/). An explicit ``optimizer.fused=...`` wins.
    """
    lr = _bound(factory).get("lr")
    if isinstance(lr, (int, float)) and lr <= 0:
        raise ValueError(f"optimizer.lr must be > 0, got {lr}.")
    params = list(params)
    extra: dict[str, Any] = {}
    if _accepts(factory, "fused") and "fused" not in _bound(factory):
        extra["fused"] = bool(params) and all(p.device.type in FUSED_DEVICES for p in params)
    return factory(params, **extra)


def cosine_factor(step: int, total_steps: int, warmup_steps: int, lrf: float) -> float:
    """LR multiplier: linear warm-up from ``lrf`` to 1, then cosine from 1 down to ``lrf``.

    ``lrf`` keeps the meaning it has in the car-colour MobileNetV3 recipe: the final LR is
    ``lr * lrf``.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return lrf + (1.0 - lrf) * step / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return lrf + (1.0 - lrf) * 0.5 * (1.0 + math.cos(math.pi * progress))


class OneCycleSchedule(OneCycleLR):
    """torch's ``OneCycleLR`` (``conf/scheduler/one_cycle.yaml``, the default) that holds its
    final learning rate past the planned steps instead of raising.

    A run resumed with a larger ``trainer.max_epochs`` restores the schedule planned for the
    original length; torch's class then stopped the resumed run at its first extra step
    ("Tried to step N times"). The cycle is over by then, as the cosine schedule's is past its
    end: both keep their last value, and a warning says so once.
    """

    def get_lr(self) -> list[float | torch.Tensor]:
        step = self.last_epoch
        if step < self.total_steps:
            return super().get_lr()
        # Step `total_steps` is the step() after a run's last batch: the end, not past it.
        if step > self.total_steps and not getattr(self, "_warned_past_end", False):
            self._warned_past_end = True
            log.warning(
                "The one-cycle schedule was planned for %d steps and has ended; the extra "
                "steps (a resume with more epochs) keep its final learning rate. To train "
                "longer with a full cycle, start a new run from the weights "
                "(model.net.weights_path=<checkpoint>).",
                self.total_steps,
            )
        self.last_epoch = self.total_steps - 1
        try:
            return super().get_lr()
        finally:
            self.last_epoch = step


def cosine_schedule(
    optimizer: Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    lrf: float = 0.01,
    warmup_epochs: float = 1.0,
) -> LambdaLR:
    """Per-step cosine from ``optimizer.lr`` down to ``lr * lrf`` after a linear warm-up of
    ``warmup_epochs`` (``conf/scheduler/cosine.yaml``); the module supplies the step counts."""
    if not 0.0 <= lrf <= 1.0:
        raise ValueError(f"scheduler.lrf must be in [0, 1], got {lrf}.")
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    return LambdaLR(optimizer, lambda step: cosine_factor(step, total_steps, warmup_steps, lrf))


def make_scheduler(
    factory: Callable[..., Any], optimizer: Optimizer, *, total_steps: int, steps_per_epoch: int
) -> Any:
    """Call a schedule factory with ``optimizer`` and whichever of ``total_steps`` /
    ``steps_per_epoch`` it takes (so plain ``torch.optim.lr_scheduler`` classes work too)."""
    context = {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch}
    bound = _bound(factory)
    extra = {k: v for k, v in context.items() if k not in bound and _accepts(factory, k)}
    return factory(optimizer, **extra)
