"""PEFT's tuners as adapter kinds, through one bridge: PEFT builds, initialises and merges the layers; the harness
only says where they go.

A bridged kind is one file, ``conf/adapter/<kind>.yaml``, whose ``peft`` block names PEFT's method (its
``PeftType``, e.g. ``VERA``), the key that sizes it and, for a method not put on projections (LN tuning: norms),
the sites it goes at and its presets; every other key but ``kind`` belongs to that method's PEFT
config class and is passed to it as it is. This module registers one record per such file at import, so a new
PEFT method is that one YAML file. ``target_modules`` is the full name of every module the harness's placement
resolves for the model's family, which PEFT matches exactly: ``placement=attn|mlp|both|best``, explicit sites and
``placement.layers`` mean the same for every bridged method on every family, and nothing else is adapted.

A method PEFT trains with a schedule of its own (AdaLoRA: its rank budget, reallocated after every step from the
gradients, and an orthogonality penalty on the loss) gets a training hook (``train_hooks``), found from what the
method's PEFT classes have (``update_and_allocate``, ``total_step``, ``orth_reg_weight``), not from its name; its
``total_step`` is the run's number of optimizer steps, set when training starts.

PEFT is imported only when a bridged kind is built or checked (its import costs every command about 2 s).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from llm_adapters import CONF_DIR
from llm_adapters.adapters import train_hooks
from llm_adapters.adapters.lora import PRESETS
from llm_adapters.adapters.registry import PEFT_PREFIX, AdapterSpec, register
from llm_adapters.errors import ConfigError, PlacementError, did_you_mean
from llm_adapters.model.architectures import PROJECTION_SITES

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
        "total_step",  # the run's optimizer steps (AdaLoRA), set by the training hook
        "rank_pattern",  # what AdaLoRA learns, not a setting
    }
)
# Bounds PEFT does not check itself, which would otherwise fail inside its training loop: (key, the key it must stay
# below). AdaLoRA only prunes: a target rank not below the initial one leaves its budget mask nothing to select
# (``kthvalue`` out of range at the first reallocation).
BELOW = {"ADALORA": (("target_r", "init_r"),)}
TUNER = "_peft_tuner"  # where the model keeps PEFT's tuner (not a submodule): shared state, PEFT-format export


def _classes(method: str) -> tuple[type, type]:
    """PEFT's config class and tuner class for ``method`` (a ``PeftType`` name)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    return PEFT_TYPE_TO_CONFIG_MAPPING[method], PEFT_TYPE_TO_TUNER_MAPPING[method]


def fields(method: str) -> list[str]:
    """The keys a bridged kind of ``method`` may set: its PEFT config's fields, less those the harness sets."""
    return sorted(f.name for f in dataclasses.fields(_classes(method)[0]) if f.name not in SET_BY_HARNESS)


def peft_config(cfg: Mapping, targets: Sequence[Any], **extra: Any) -> Any:
    """The PEFT config of a bridged kind's adapter config on ``targets`` (their full module names). A method that
    needs the run's step count gets the smallest its schedule accepts until training starts (``_Schedule.start``)."""
    kwargs = {key: value for key, value in cfg.items() if key not in ("kind", BLOCK)}
    config_class, _ = _classes(cfg[BLOCK]["method"])
    defaults = config_class.__dataclass_fields__
    for key, ceiling in BELOW.get(cfg[BLOCK]["method"], ()):
        value, most = (kwargs.get(k, defaults[k].default) for k in (key, ceiling))
        if value >= most:
            raise ConfigError(f"adapter.{key} ({value}) must be below adapter.{ceiling} ({most}) for '{cfg['kind']}'")
    if "total_step" in {f.name for f in dataclasses.fields(config_class)}:
        tinit, tfinal = (int(kwargs.get(key, defaults[key].default)) for key in ("tinit", "tfinal"))
        extra = {"total_step": tinit + tfinal + 1, **extra}
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
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"adapter '{cfg['kind']}': PEFT's {method} config refuses it: {error}") from None


def inject(model: nn.Module, cfg: Mapping, targets: Sequence[Any]) -> None:
    """PEFT's layers of the kind's method on exactly ``targets``; PEFT freezes everything else. A module type the
    method does not support (GPT-2's ``Conv1D`` for most) is a ``PlacementError`` with PEFT's reason."""
    method = cfg[BLOCK]["method"]
    _, tuner_class = _classes(method)
    try:
        with torch.device("cpu"), warnings.catch_warnings(record=True) as said:  # built for real even on a meta
            warnings.simplefilter("always")  # base (plan mode): some methods' init reads values
            tuner = tuner_class(model, peft_config(cfg, targets), adapter_name="default")
    except ConfigError:
        raise
    except (ValueError, TypeError, NotImplementedError) as error:
        sites = ", ".join(sorted({t.site for t in targets}))
        reason = str(error).strip().splitlines()[0]
        raise PlacementError(f"adapter '{cfg['kind']}' (PEFT's {method}) cannot go on {sites} here: {reason}") from None
    _refuse_adjusted(cfg, [str(w.message) for w in said])
    object.__setattr__(model, TUNER, tuner)  # not a submodule: the model's modules and state stay its own
    if hasattr(tuner, "update_and_allocate"):
        train_hooks.attach(model, _Schedule(tuner, cfg["kind"]))


def _refuse_adjusted(cfg: Mapping, said: Sequence[str]) -> None:
    """A size PEFT changed on its own while building the layers (OFT's block size that does not divide a
    projection's width becomes the nearest that does, with a warning): refused in one line, since the job would
    record the size asked for while its weights have another (two cells of one adapter in every table). Other
    warnings are passed on as PEFT gave them."""
    for message in said:
        if "! Adjusted `" in message:  # OFT's "Invalid `oft_block_size` (7)! Adjusted `oft_block_size` to (8)."
            size = cfg[BLOCK].get("size")
            asked = f"adapter.{size}={cfg.get(size)}" if size else f"adapter '{cfg['kind']}'"
            raise ConfigError(
                f"{asked}: PEFT's {cfg[BLOCK]['method']} would not build it as asked on these modules "
                f"({message.strip().splitlines()[0]}): choose a value it takes as it is"
            )
        warnings.warn(message, UserWarning, stacklevel=3)


class _Schedule:
    """The training hook of a PEFT method with a schedule of its own (AdaLoRA): its rank budget reallocated after
    every optimizer step, and its orthogonality penalty added to the loss as PEFT's forward adds it to ``labels=``'s
    loss (the harness computes the loss itself)."""

    def __init__(self, tuner: Any, kind: str) -> None:
        self.tuner, self.kind = tuner, kind
        self.config = tuner.peft_config["default"]

    def start(self, total_steps: int) -> None:
        tinit, tfinal = self.config.tinit, self.config.tfinal
        if tinit >= total_steps - tfinal:
            raise ConfigError(
                f"adapter '{self.kind}': adapter.tinit ({tinit}) + adapter.tfinal ({tfinal}) leave no step of the "
                f"run's {total_steps} to reallocate ranks in: lower them or train longer"
            )
        self.config.total_step = total_steps

    def loss(self) -> torch.Tensor | None:
        weight = getattr(self.config, "orth_reg_weight", 0.0)
        named = [(n, p) for n, p in self.tuner.model.named_parameters() if ".lora_A." in n or ".lora_B." in n]
        if not weight or not named:
            return None
        # ||A Aᵀ − I|| for each A (its rows orthonormal), ||Bᵀ B − I|| for each B (its columns), averaged
        grams = [p @ p.T if ".lora_A." in n else p.T @ p for n, p in named]
        penalty = sum(torch.linalg.matrix_norm(g - torch.eye(len(g), dtype=g.dtype, device=g.device)) for g in grams)
        return weight * penalty / len(grams)

    def after_step(self, step: int) -> None:
        self.tuner.update_and_allocate(step)

    def state_dict(self) -> dict[str, Any]:
        allocator = self.tuner.rankallocator
        ema = {name: dict(getattr(allocator, name)) for name in ("ipt", "exp_avg_ipt", "exp_avg_unc")}
        return {**ema, "rank_pattern": self.config.rank_pattern}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            setattr(self.tuner.rankallocator, name, dict(state[name]))
        self.config.rank_pattern = state["rank_pattern"]


def count(cfg: Mapping, targets: Sequence[Any], config: Any) -> int:
    """The trainable parameters, counted by PEFT itself on a model built on the meta device from the config alone
    (no weights): exact whatever the method's structure. A placement PEFT refuses fails here already."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        inject(model, cfg, targets)
    # Moving a layer's frozen tensors (``other_param_names``: AdaLoRA's ranknum) to a meta base re-wraps them as
    # trainable parameters, which on a real base they are not: frozen again.
    for layer in model.modules():
        for name in getattr(layer, "other_param_names", ()) if isinstance(layer, BaseTunerLayer) else ():
            if isinstance(values := getattr(layer, name, None), nn.ParameterDict):
                values.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class _AsPeftModel(nn.Module):
    """A ``PeftModel``'s layout around our model's tuner (``base_model`` → tuner → ``model``), so PEFT's own
    ``get_peft_model_state_dict`` names the weights (and any shared state, VeRA's projections) as it saves them.
    Its config is a copy: saving rewrites parts of it (AdaLoRA's rank pattern)."""

    def __init__(self, tuner: nn.Module) -> None:
        super().__init__()
        self.base_model = tuner
        self.peft_config = copy.deepcopy(tuner.peft_config)

    def __getattr__(self, name: str) -> Any:  # as PeftModel: what it does not have, its tuner does
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.base_model, name)


def export(model: nn.Module, cfg: Mapping, model_name: str, targets: Sequence[Any]) -> tuple[dict, dict] | None:
    """The adapter in PEFT's format, which ``peft.PeftModel.from_pretrained`` loads (none on a slice of a fused
    projection, which PEFT has no way to name)."""
    from peft import get_peft_model_state_dict

    if any(t.sliced for t in targets):
        return None
    shim = _AsPeftModel(getattr(model, TUNER))
    weights = get_peft_model_state_dict(shim, adapter_name="default")
    trained = shim.peft_config["default"]  # with what training set in it (AdaLoRA's total_step and rank pattern)
    config = dataclasses.replace(trained, base_model_name_or_path=model_name, task_type="CAUSAL_LM")
    config.inference_mode = True
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
            sites=tuple(_yaml[BLOCK].get("sites", PROJECTION_SITES)),  # the projections, or the file's (norms)
            presets=_yaml[BLOCK].get("presets", PRESETS),  # where LoRA goes, unless the file says otherwise
            size_key=_yaml[BLOCK].get("size"),
            keys={_yaml[BLOCK]["size"]: "count"} if "size" in _yaml[BLOCK] else {},  # a size is a positive integer
            mergeable=True,  # every bridged method's PEFT layers fold into the frozen weights
        )
    )
