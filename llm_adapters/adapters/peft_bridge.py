"""PEFT's tuners as adapter kinds, through one bridge: PEFT builds, initialises and merges the layers; the harness
only says where they go.

A bridged kind is one file, ``conf/adapter/<kind>.yaml``, whose ``peft`` block names PEFT's method (its
``PeftType``, e.g. ``VERA``) and the key that sizes it; every other key but ``kind`` belongs to that method's PEFT
config class and is passed to it as it is. This module registers one record per such file at import, so a new
PEFT method is that one YAML file. ``target_modules`` is the full name of every module the harness's placement
resolves for the model's family, which PEFT matches exactly: ``placement=attn|mlp|both|best``, explicit sites and
``placement.layers`` mean the same for every bridged method on every family, and nothing else is adapted.

PEFT is imported only when a bridged kind is built or checked (its import costs every command about 2 s).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from llm_adapters import CONF_DIR
from llm_adapters.adapters.lora import PRESETS
from llm_adapters.adapters.registry import PEFT_PREFIX, AdapterSpec, register
from llm_adapters.architectures import PROJECTION_SITES
from llm_adapters.errors import ConfigError, PlacementError, did_you_mean

BLOCK = "peft"  # the YAML block that makes a kind a bridge: {method: <PeftType>, size: <its size key>}
# PEFT config fields the harness sets itself (where, what for) or that would let PEFT choose modules of its own.
SET_BY_HARNESS = frozenset(
    {
        "peft_type",
        "task_type",
        "target_modules",
        "exclude_modules",
        "layers_to_transform",
        "layers_pattern",
        "modules_to_save",
        "inference_mode",
        "base_model_name_or_path",
        "revision",
        "auto_mapping",
        "peft_version",
    }
)
TUNER = "_peft_tuner"  # where the model keeps PEFT's tuner (not a submodule): shared state, PEFT-format export


def _classes(method: str) -> tuple[type, type]:
    """PEFT's config class and tuner class for ``method`` (a ``PeftType`` name)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    return PEFT_TYPE_TO_CONFIG_MAPPING[method], PEFT_TYPE_TO_TUNER_MAPPING[method]


def fields(method: str) -> list[str]:
    """The keys a bridged kind of ``method`` may set: its PEFT config's fields, less those the harness sets."""
    import dataclasses

    return sorted(f.name for f in dataclasses.fields(_classes(method)[0]) if f.name not in SET_BY_HARNESS)


def peft_config(cfg: Mapping, targets: Sequence[Any], **extra: Any) -> Any:
    """The PEFT config of a bridged kind's adapter config on ``targets`` (their full module names)."""
    kwargs = {key: value for key, value in cfg.items() if key not in ("kind", BLOCK)}
    config_class, _ = _classes(cfg[BLOCK]["method"])
    return config_class(target_modules=[t.module_name for t in targets], **kwargs, **extra)


def check_keys(cfg: Mapping) -> None:
    """Every key is one the method's PEFT config has, and PEFT accepts the values: before anything loads."""
    method, allowed = cfg[BLOCK]["method"], fields(cfg[BLOCK]["method"])
    for key in cfg:
        if key not in ("kind", BLOCK, *allowed):
            hint = did_you_mean(str(key), allowed, "adapter.")
            raise ConfigError(
                f"adapter.{key}: PEFT's {method} config has no such key{hint}; it has {', '.join(allowed)}"
            )
    try:
        peft_config(cfg, [])
    except (TypeError, ValueError) as error:
        raise ConfigError(f"adapter '{cfg['kind']}': PEFT's {method} config refuses it: {error}") from None


def inject(model: nn.Module, cfg: Mapping, targets: Sequence[Any]) -> None:
    """PEFT's layers of the kind's method on exactly ``targets``; PEFT freezes everything else. A module type the
    method does not support (GPT-2's ``Conv1D`` for most) is a ``PlacementError`` with PEFT's reason."""
    method = cfg[BLOCK]["method"]
    _, tuner_class = _classes(method)
    try:
        with torch.device("cpu"):  # built for real even on a meta base (plan mode): some methods' init reads values
            tuner = tuner_class(model, peft_config(cfg, targets), adapter_name="default")
    except (ValueError, TypeError, NotImplementedError) as error:
        sites = ", ".join(sorted({t.site for t in targets}))
        reason = str(error).strip().splitlines()[0]
        raise PlacementError(f"adapter '{cfg['kind']}' (PEFT's {method}) cannot go on {sites} here: {reason}") from None
    object.__setattr__(model, TUNER, tuner)  # not a submodule: the model's modules and state stay its own


def count(cfg: Mapping, targets: Sequence[Any], config: Any) -> int:
    """The trainable parameters, counted by PEFT itself on a model built on the meta device from the config alone
    (no weights): exact whatever the method's structure. A placement PEFT refuses fails here already."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        inject(model, cfg, targets)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class _AsPeftModel(nn.Module):
    """A ``PeftModel``'s layout around our model's tuner (``base_model`` → tuner → ``model``), so PEFT's own
    ``get_peft_model_state_dict`` names the weights (and any shared state, VeRA's projections) as it saves them."""

    def __init__(self, tuner: nn.Module) -> None:
        super().__init__()
        self.base_model = tuner
        self.peft_config = tuner.peft_config


def export(model: nn.Module, cfg: Mapping, model_name: str, targets: Sequence[Any]) -> tuple[dict, dict] | None:
    """The adapter in PEFT's format, which ``peft.PeftModel.from_pretrained`` loads (none on a slice of a fused
    projection, which PEFT has no way to name)."""
    from peft import get_peft_model_state_dict

    if any(t.sliced for t in targets):
        return None
    weights = get_peft_model_state_dict(_AsPeftModel(getattr(model, TUNER)), adapter_name="default")
    config = peft_config(cfg, targets, base_model_name_or_path=model_name, task_type="CAUSAL_LM", inference_mode=True)
    saved = {key: sorted(value) if isinstance(value, set) else value for key, value in config.to_dict().items()}
    # Shared state (RandLoRA's bases) appears under every layer's name: cloned apart, as PEFT's save_pretrained does.
    return {key if key.startswith(PEFT_PREFIX) else PEFT_PREFIX + key: v.clone() for key, v in weights.items()}, saved


@functools.cache
def bridged_yaml() -> dict[str, dict]:
    """Every ``conf/adapter/*.yaml`` with a ``peft`` block, by kind."""
    found = {}
    for path in sorted((CONF_DIR / "adapter").glob("*.yaml")):
        data = OmegaConf.to_container(OmegaConf.load(path))
        if isinstance(data, dict) and BLOCK in data:
            found[data["kind"]] = data
    return found


for _kind, _yaml in bridged_yaml().items():
    register(
        AdapterSpec(
            _kind,
            inject=inject,
            count=count,
            export=export,
            check_keys=check_keys,
            sites=PROJECTION_SITES,
            presets=_yaml[BLOCK].get("presets", PRESETS),  # where LoRA goes, unless the file says otherwise
            size_key=_yaml[BLOCK].get("size"),
            keys={_yaml[BLOCK]["size"]: "count"} if "size" in _yaml[BLOCK] else {},  # a size is a positive integer
            mergeable=True,  # every bridged method's PEFT layers fold into the frozen weights
        )
    )
