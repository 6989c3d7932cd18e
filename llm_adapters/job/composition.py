"""How the project's config is composed: the resolvers its YAML files use, Hydra's compose outside a Hydra app,
the keys a group file defines through its inheritance, and a study file's per-adapter and per-run patches."""

from __future__ import annotations

import re
import secrets

from omegaconf import DictConfig, OmegaConf

from llm_adapters import CONF_DIR
from llm_adapters.adapters import known_kinds
from llm_adapters.errors import ConfigError


def _dirname(text: str) -> str:
    """A job directory name from Hydra's override string: no path separators, at most 200 characters."""
    return re.sub(r"[/\\\s]+", "_", text)[:200]


def register_resolvers() -> None:
    """``${uid:}`` is a short random id, fixed for the process (so every job of a sweep shares it) and different for
    two sweeps started in the same second; ``${dirname:...}`` makes an override string safe as a directory name."""
    if not OmegaConf.has_resolver("uid"):
        OmegaConf.register_new_resolver("uid", lambda: secrets.token_hex(3), use_cache=True)
    if not OmegaConf.has_resolver("dirname"):
        OmegaConf.register_new_resolver("dirname", _dirname)


def compose(*overrides: str) -> DictConfig:
    """The project's config as ``python run.py`` composes it (the groups, their inheritance from ``conf/base``,
    the overrides, a study file's patches applied as ``run.py`` applies them), outside a Hydra app: what tests and
    benchmarks build their jobs' settings from, so neither reads a YAML file alone."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return apply_study(hydra_compose(config_name="config", overrides=list(overrides)))


def apply_study(cfg: DictConfig) -> DictConfig:
    """The per-adapter and per-run settings a study file gives (sweeps/), merged in for this job:
    ``per_adapter.<kind>`` patches the whole config (e.g. prefix tuning's own schedule), ``per_run."<model>/<kind>"``
    patches it for one model's row (e.g. the 8-bit base and the validation split its command used), and
    ``grid.<kind>[grid_point]`` patches the adapter (e.g. the configuration study's sizes)."""
    kind = cfg.adapter.kind
    patches = []
    if cfg.get("per_adapter") and kind in cfg.per_adapter:
        patches.append(cfg.per_adapter[kind])
    for key in cfg.get("per_run") or {}:
        model, _, adapter = str(key).partition("/")
        if not (CONF_DIR / "model" / f"{model}.yaml").is_file() or adapter not in known_kinds():
            raise ConfigError(f"per_run.{key}: not a <model>/<adapter kind> of this project (e.g. llama-7b/lora)")
    if cfg.get("per_run") and f"{cfg.model.name}/{kind}" in cfg.per_run:
        patches.append(cfg.per_run[f"{cfg.model.name}/{kind}"])
    if cfg.get("grid_point") is not None:
        if not cfg.get("grid") or kind not in cfg.grid:
            raise ConfigError(f"grid_point is set but the study has no grid for adapter '{kind}'")
        row = cfg.grid[kind]
        if not 0 <= cfg.grid_point < len(row):
            raise ConfigError(f"grid_point {cfg.grid_point} is outside grid.{kind} ({len(row)} points)")
        patches.append({"adapter": row[cfg.grid_point]})
    return OmegaConf.merge(cfg, *patches) if patches else cfg
