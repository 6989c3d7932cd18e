"""The adapter family behind one small interface, driven by the registry (``registry.py``: one record per kind).

``targets_for`` settles where an adapter goes from the model's config alone; ``prepare`` freezes the model and puts
the adapter there, so only adapter parameters are left trainable; the model code never learns which kind it
carries. After training, ``merge_adapters`` folds whatever can be folded into the frozen weights, and
``carries_virtual_tokens`` tells evaluation whether the model's KV cache starts with virtual tokens.

Every module in this folder is imported below, and each kind's module registers its own record: adding a kind
touches no file but its own module and its YAML.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from transformers import PretrainedConfig

from llm_adapters.adapters.lora_init import BASE_BUFFERS
from llm_adapters.adapters.placement import PlacementError, Target, resolve
from llm_adapters.adapters.registry import REGISTRY, AdapterSpec, adapter_kinds, known_kinds, spec
from llm_adapters.adapters.virtual_tokens import carries_virtual_tokens
from llm_adapters.model.architectures import PROJECTION_SITES, architecture_of

__all__ = [
    "REGISTRY",
    "AdapterSpec",
    "adapter_kinds",
    "carries_virtual_tokens",
    "known_kinds",
    "merge_adapters",
    "prepare",
    "spec",
    "targets_for",
    "trainable_count",
]


@runtime_checkable
class Mergeable(Protocol):
    """An adapter layer that can fold itself into the frozen weight it wraps (exactly, for evaluation)."""

    merged: bool

    def merge(self) -> None: ...


def targets_for(config: PretrainedConfig, adapter_cfg: Mapping, placement_cfg: Mapping) -> list[Target]:
    """The modules an adapter goes to, from the model's config alone (none for a kind that takes no placement)."""
    kind = adapter_cfg["kind"]
    if kind not in REGISTRY:
        raise PlacementError(f"unknown adapter.kind '{kind}' (known: {', '.join(known_kinds())})")
    record = REGISTRY[kind]
    if not record.placed:
        if placement_cfg.get("sites") or placement_cfg.get("layers"):
            raise PlacementError(f"adapter '{kind}' takes no placement: placement.sites/layers cannot apply to it")
        return []
    targets = resolve(config, placement_cfg, kind, record.presets, record.sites, record.sliceable)
    if record.inject is not None:  # PEFT decides which module types it takes: asked on the meta device, now
        record.count(adapter_cfg, targets, config)
    if record.attach is not None:
        if placement_cfg.get("layers"):
            raise PlacementError(f"adapter '{kind}' acts on every layer: placement.layers cannot restrict it")
        return []
    return targets


def prepare(model: nn.Module, adapter_cfg: Mapping, targets: Sequence[Target]) -> None:
    """Make ``model`` what the adapter config asks for: adapters on ``targets``, or a baseline's trainable set."""
    record = spec(adapter_cfg["kind"])
    model.requires_grad_(record.trains == "all")
    parts = [REGISTRY[part] for part in record.parts] or [record]
    for part in (p for p in parts if p.attach is None and p.trains == "adapter"):  # first: inject freezes all
        (part.inject or inject)(model, {**adapter_cfg, "kind": part.kind}, targets)
    for part in (p for p in parts if p.attach is not None):
        part.attach(model, adapter_cfg)


def trainable_count(adapter_cfg: Mapping, targets: Sequence[Target], config: PretrainedConfig) -> int:
    """The trainable parameters an adapter's definition gives on ``targets``, from the config's numbers alone (a
    composite's: its parts' sum). Only for kinds that add adapters (a baseline trains all or nothing)."""
    record = spec(adapter_cfg["kind"])
    parts = [REGISTRY[part] for part in record.parts] or [record]
    return sum(part.count({**adapter_cfg, "kind": part.kind}, targets, config) for part in parts)


def inject(model: nn.Module, adapter_cfg: Mapping, targets: Sequence[Target]) -> None:
    """Freeze ``model`` and put an adapter of kind ``adapter_cfg['kind']`` at each target."""
    record = spec(adapter_cfg["kind"])
    if record.wrap is None and record.sublayer is None:
        raise ValueError(f"adapter.kind '{record.kind}' is not put on projections or sublayers")
    model.requires_grad_(False)
    arch = architecture_of(model.config)
    for target in targets:
        parent_name, _, attr = target.module_name.rpartition(".")
        if target.site not in PROJECTION_SITES:
            block = model.get_submodule(parent_name.removesuffix(".sublayer_adapters"))
            if not hasattr(block, "sublayer_adapters"):
                block.sublayer_adapters = nn.ModuleDict()
            block.sublayer_adapters[attr] = record.sublayer(block, arch, target.site, adapter_cfg)
            continue
        parent = model.get_submodule(parent_name)
        rows = arch.slice_rows(target.site, model.config) if target.sliced else None
        setattr(parent, attr, record.wrap(getattr(parent, attr), target.site, adapter_cfg, rows))


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """What an adapter checkpoint holds: the trainable parameters by name, and the initial factors of every layer
    whose init moved part of the frozen base into the adapter (PiSSA, OLoRA: ``lora_init.BASE_BUFFERS``), without
    which a fresh base cannot be made the residual it trained on."""
    state = {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}
    return state | {name: buffer.detach().cpu().contiguous() for name, buffer in _base_buffers(model)}


def load_adapter_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Copy ``state`` (``adapter_state_dict``'s) into a model built with the same adapter; what does not fit, in
    words (the caller's error names the file), or None. A layer's saved initial factors make its base the residual
    they define (``LoRALinear.restore_base``)."""
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad} | {name for name, _ in _base_buffers(model)}
    if set(state) != expected:
        return "its weights do not match the adapter built from its config"
    with torch.no_grad():
        for name, value in state.items():
            target = params[name] if name in params else model.get_buffer(name)
            if target.shape != value.shape:
                return f"{name} has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}"
        for name, value in state.items():
            if name in params:
                params[name].copy_(value)
        for module_name in {n.rpartition(".")[0] for n in state if n not in params}:
            factors = {part: state[f"{module_name}.{part}"] for part in BASE_BUFFERS}
            model.get_submodule(module_name).restore_base(**factors)
    return None


def _base_buffers(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The initial-factor buffers an adapter state holds besides its trainable parameters."""
    return [(name, b) for name, b in model.named_buffers() if name.rpartition(".")[2] in BASE_BUFFERS]


def set_adapter_dropout(model: nn.Module, active: bool) -> None:
    """Switch the dropout inside every adapter on or off, whatever mode the rest of the model is in.

    The paper's evaluate.py put the model in eval mode only on its CPU path, so on GPUs the freshly loaded adapter
    layers generated with dropout on; protocol=paper reproduces that, protocol=fixed turns it off. Every dropout
    inside an adapter wrapper or a sublayer adapter is the adapter's: the frozen projections have none.
    """
    roots = [
        name
        for name, module in model.named_modules()
        if hasattr(module, "base_layer") or name.endswith("sublayer_adapters")
    ]
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and any(name.startswith(root + ".") for root in roots):
            module.train(active)


def merge_adapters(model: nn.Module) -> int:
    """Fold every mergeable adapter layer into its frozen weight for evaluation; returns how many were merged."""
    layers = [m for m in model.modules() if isinstance(m, Mergeable)]
    for layer in layers:
        layer.merge()
    return len(layers)


for _module in pkgutil.iter_modules(__path__):  # each kind's module registers its record on import
    importlib.import_module(f"{__name__}.{_module.name}")
