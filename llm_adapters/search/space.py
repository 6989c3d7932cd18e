"""The search space of ``hydra/sweeper=optuna_search``, read from Hydra's sweep grammar as Hydra's own Optuna
sweeper reads it, and drawn for each trial: the adapter kind first, then only the keys that kind has."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llm_adapters import CONF_DIR
from llm_adapters.errors import ConfigError
from llm_adapters.files import yaml_keys


@dataclass(frozen=True)
class Param:
    """One searched key: its override prefix (``+`` to add a key), name, and distribution."""

    prefix: str
    key: str
    distribution: Any


@dataclass(frozen=True)
class Space:
    """The searched keys (drawn in order: the adapter kind first) and the fixed overrides of every trial."""

    params: tuple[Param, ...]
    fixed: tuple[str, ...]

    @classmethod
    def parse(cls, overrides: Sequence[Any]) -> Space:
        """From Hydra's parsed overrides: ``choice``/``range`` categorical, ``interval`` float (``int(...)``: int),
        ``tag(log, ...)`` on a log scale."""
        import optuna.distributions as dist
        from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

        params, fixed = [], []
        for override in overrides:
            if not override.is_sweep_override():
                fixed.append(override.input_line)
                continue
            key, value = override.get_key_element(), override.value()
            prefix = "++" if override.is_force_add() else "+" if override.is_add() else ""
            if isinstance(value, ChoiceSweep):
                distribution = dist.CategoricalDistribution(list(value.list))
            elif isinstance(value, RangeSweep):
                distribution = dist.CategoricalDistribution(list(override.sweep_iterator()))
            elif isinstance(value, IntervalSweep):
                distribution = _interval(override.input_line, value)
            else:
                raise ConfigError(
                    f"{override.input_line}: not a search space Optuna can draw from (choice, range, interval)"
                )
            params.append(Param(prefix, key.lstrip("+"), distribution))
        params.sort(key=lambda p: p.key != "adapter")  # the kind first: its keys depend on it
        return cls(tuple(params), tuple(fixed))

    def overrides(self, trial: Any) -> list[str]:
        """The trial's job overrides: the fixed ones, and a value drawn for each searched key that applies."""
        kind = next((o.split("=", 1)[1] for o in self.fixed if o.startswith("adapter=")), "lora")
        drawn = []
        for param in self.params:
            group, _, name = param.key.partition(".")
            if group == "adapter" and name and name.split(".")[0] not in _adapter_keys(kind):
                continue  # a kind's own key: only for the kinds that have it
            value = _suggest(trial, param)
            if param.key == "adapter":
                kind = str(value)
            drawn.append(f"{param.prefix}{param.key}={value}")
        return [*self.fixed, *drawn]


def _interval(line: str, value: Any) -> Any:
    """Optuna's distribution for ``interval(low, high)`` (``int(...)``: integers; ``tag(log, ...)``: log scale), its
    bounds checked here so that a reversed or non-positive log interval is one line, not Optuna's traceback."""
    import optuna.distributions as dist

    log_scale = "log" in value.tags
    low, high = value.start, value.end
    if low > high:
        raise ConfigError(f"{line}: the interval's low end {low} is above its high end {high}")
    if log_scale and low <= 0:
        raise ConfigError(f"{line}: a log-scale interval needs a low end above 0 (got {low})")
    if isinstance(low, int) and isinstance(high, int):
        return dist.IntDistribution(low, high, log=log_scale)
    return dist.FloatDistribution(float(low), float(high), log=log_scale)


def _suggest(trial: Any, param: Param) -> Any:
    """Optuna's public suggest call for the parameter's distribution."""
    import optuna.distributions as dist

    d = param.distribution
    if isinstance(d, dist.CategoricalDistribution):
        return trial.suggest_categorical(param.key, d.choices)
    if isinstance(d, dist.IntDistribution):
        return trial.suggest_int(param.key, d.low, d.high, log=d.log)
    return trial.suggest_float(param.key, d.low, d.high, log=d.log)


def _adapter_keys(kind: str) -> list[str]:
    path = CONF_DIR / "adapter" / f"{kind}.yaml"
    return yaml_keys(path) if path.is_file() else []
