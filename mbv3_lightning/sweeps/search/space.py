"""The search space, written in Hydra's sweep syntax, as Optuna distributions.

The syntax is the one the Hydra Optuna sweeper plugin taught its users, with Hydra's own
meaning for each form:

- ``interval(a, b)``: a float in [a, b]; ``tag(log, interval(a, b))`` on a log scale;
  ``tag(int, interval(a, b))`` an integer in [a, b].
- ``choice(a, b, c)``, or the plain list ``a,b,c``: one of the values (``shuffle(...)`` too).
- ``range(start, stop, step)``: the values Hydra's basic sweeper would run, ``stop``
  excluded, as an integer (or stepped float) distribution, so the sampler knows their order.
- anything else (``trainer.max_epochs=3``) is fixed: every trial gets it as it is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
    Transformer,
)
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

_KNOWN_TAGS = frozenset({"log", "int"})
_PLAIN = (str, int, float, bool, type(None))


class SearchSpaceError(ValueError):
    """A search-space entry Optuna cannot sample; the message names the key and the fix."""


@dataclass(frozen=True)
class SearchSpace:
    """What a study samples (``distributions``) and what every trial gets as it is (``fixed``)."""

    distributions: dict[str, BaseDistribution]
    fixed: list[str] = field(default_factory=list)
    # "+" for a key the sampled override adds (`+key=value`); absent for a plain change
    prefixes: dict[str, str] = field(default_factory=dict)

    def suggest(self, trial: Trial) -> dict[str, Any]:
        """Sample every parameter for ``trial`` (a trial that already holds values, such as an
        interrupted one taken up again, gets its own values back)."""
        params: dict[str, Any] = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                params[name] = trial.suggest_categorical(name, dist.choices)
            elif isinstance(dist, IntDistribution):
                params[name] = trial.suggest_int(
                    name, dist.low, dist.high, step=dist.step, log=dist.log
                )
            else:
                assert isinstance(dist, FloatDistribution)
                params[name] = trial.suggest_float(
                    name, dist.low, dist.high, step=dist.step, log=dist.log
                )
        return params

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The trial's command-line overrides: its sampled values, then the fixed ones."""
        sampled = [
            f"{self.prefixes.get(name, '')}{name}={override_value(value)}"
            for name, value in params.items()
        ]
        return [*sampled, *self.fixed]

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values, for Optuna's GridSampler (discrete spaces only)."""
        grid: dict[str, list[Any]] = {}
        for name, dist in self.distributions.items():
            if isinstance(dist, CategoricalDistribution):
                grid[name] = list(dist.choices)
            elif isinstance(dist, (IntDistribution, FloatDistribution)) and (
                dist.step is not None and not dist.log
            ):
                count = round((dist.high - dist.low) / dist.step) + 1
                grid[name] = [dist.low + i * dist.step for i in range(count)]
            else:
                raise SearchSpaceError(
                    f"hydra.sweeper.params.{name}: the grid sampler needs a list, choice(...) "
                    "or range(...), not an interval."
                )
        return grid

    def describe(self) -> dict[str, Any]:
        """What the study searches, in the search-space syntax (a resumed study must search
        the same); ``sweep.*`` overrides steer the sweep itself and may change."""
        return {
            "params": {name: describe(d) for name, d in self.distributions.items()},
            "fixed": sorted(o for o in self.fixed if not o.lstrip("+~").startswith("sweep.")),
        }


def describe(dist: BaseDistribution) -> str:
    """A distribution in the search-space syntax that makes it."""
    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(override_value(c) for c in dist.choices)})"
    assert isinstance(dist, FloatDistribution | IntDistribution)
    low, high = override_value(dist.low), override_value(dist.high)
    if dist.log:
        inner = f"interval({low}, {high})"
        return (
            f"tag(int, log, {inner})" if isinstance(dist, IntDistribution) else f"tag(log, {inner})"
        )
    if dist.step is not None and (isinstance(dist, FloatDistribution) or dist.step != 1):
        return f"range({low}, {override_value(dist.high + dist.step)}, {override_value(dist.step)})"
    return (
        f"tag(int, interval({low}, {high}))"
        if isinstance(dist, IntDistribution)
        else f"interval({low}, {high})"
    )


def override_value(value: Any) -> str:
    """A sampled value as Hydra's override grammar reads it back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back to the same float
    return str(value)


def parse_search_space(
    params: Mapping[str, Any] | None, arguments: Sequence[str] = ()
) -> SearchSpace:
    """``hydra.sweeper.params`` (``key: sweep``), then the command line's overrides; a key given
    twice takes its last value, so the command line wins, as it does everywhere in Hydra."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()]
    lines += list(arguments)
    parsed: dict[str, tuple[Override, str]] = {}
    for line, override in zip(lines, OverridesParser.create().parse_overrides(lines), strict=True):
        name = override.get_key_element().lstrip("+~")  # `key`, `group` or `group@package`
        parsed.pop(name, None)  # the later one wins and takes the later position
        parsed[name] = (override, line)
    distributions: dict[str, BaseDistribution] = {}
    prefixes: dict[str, str] = {}
    fixed: list[str] = []
    for name, (override, line) in parsed.items():
        if not override.is_sweep_override():
            fixed.append(line)
            continue
        distributions[name] = _distribution(name, override)
        element = override.get_key_element()
        if element != name:
            prefixes[name] = element[: len(element) - len(name)]
    return SearchSpace(distributions=distributions, fixed=fixed, prefixes=prefixes)


def _distribution(key: str, override: Override) -> BaseDistribution:
    sweep = override.value()
    tags = set(getattr(sweep, "tags", ()) or ())
    unknown = tags - _KNOWN_TAGS
    if unknown:
        raise SearchSpaceError(
            f"hydra.sweeper.params.{key}: unknown tag {sorted(unknown)}; the search knows "
            "tag(log, ...) and tag(int, ...)."
        )
    try:
        if isinstance(sweep, IntervalSweep):
            return _interval(key, sweep, tags)
        values = list(override.sweep_iterator(transformer=Transformer.encode))
        if isinstance(sweep, RangeSweep) and not sweep.shuffle:
            return _range(key, values, tags)
        if isinstance(sweep, ChoiceSweep | RangeSweep):
            if tags:
                raise SearchSpaceError(
                    f"hydra.sweeper.params.{key}: tag({', '.join(sorted(tags))}, ...) applies "
                    "to interval(...) and range(...), not to a list of choices."
                )
            return _choice(key, values)
    except ValueError as err:  # Optuna's own check of low/high/step
        if isinstance(err, SearchSpaceError):
            raise
        raise SearchSpaceError(f"hydra.sweeper.params.{key}: {err}") from None
    raise SearchSpaceError(
        f"hydra.sweeper.params.{key}: '{override.input_line}' is not a search space; use "
        "interval(a, b), tag(log, interval(a, b)), choice(a, b, ...) or range(start, stop, step)."
    )


def _interval(key: str, sweep: IntervalSweep, tags: set[str]) -> BaseDistribution:
    low, high, log = sweep.start, sweep.end, "log" in tags
    assert low is not None and high is not None
    if "int" in tags:
        if not (float(low).is_integer() and float(high).is_integer()):
            raise SearchSpaceError(
                f"hydra.sweeper.params.{key}: tag(int, interval({low}, {high})) needs whole "
                "numbers at both ends."
            )
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(float(low), float(high), log=log)


def _range(key: str, values: list[Any], tags: set[str]) -> BaseDistribution:
    if not values:
        raise SearchSpaceError(f"hydra.sweeper.params.{key}: the range holds no value.")
    low, high = min(values), max(values)
    if "int" in tags and not all(float(v).is_integer() for v in values):
        raise SearchSpaceError(f"hydra.sweeper.params.{key}: tag(int, range(...)) needs integers.")
    step = abs(values[1] - values[0]) if len(values) > 1 else 1
    if all(isinstance(v, int) for v in values):
        if "log" in tags and step != 1:
            raise SearchSpaceError(
                f"hydra.sweeper.params.{key}: tag(log, range(...)) needs step 1 (Optuna samples "
                "a log scale without steps); use tag(log, interval(a, b)) instead."
            )
        log = "log" in tags
        return IntDistribution(int(low), int(high), log=log, step=1 if log else int(step))
    if "log" in tags:
        raise SearchSpaceError(
            f"hydra.sweeper.params.{key}: Optuna samples a log scale without steps; use "
            "tag(log, interval(a, b)) instead of tag(log, range(...))."
        )
    # Hydra adds the step repeatedly; round the ends so Optuna sees a whole number of steps.
    digits = max(0, -math.floor(math.log10(step))) + 6 if step else 6
    return FloatDistribution(round(low, digits), round(high, digits), step=round(step, digits))


def _choice(key: str, values: list[Any]) -> BaseDistribution:
    bad = [v for v in values if not isinstance(v, _PLAIN)]
    if bad:
        raise SearchSpaceError(
            f"hydra.sweeper.params.{key}: a choice holds plain values (numbers, strings, "
            f"true/false, null), not {bad[0]!r}."
        )
    if not values:
        raise SearchSpaceError(f"hydra.sweeper.params.{key}: the choice holds no value.")
    return CategoricalDistribution(values)
