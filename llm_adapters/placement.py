"""Placement: which sites of which layers get an adapter.

A placement config is either a preset (``attn``, ``mlp``, ``both``, ``best``) that lists, per adapter kind, the
sites the paper's code attached that kind to, or an explicit ``sites`` list; ``layers`` restricts either to a subset
of decoder blocks. Preset sites an architecture lacks (``mlp.gate`` outside gated MLPs) are skipped, since the
paper's code used whatever first MLP projections a family had; explicitly named sites must exist.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from transformers import PretrainedConfig

from llm_adapters.architectures import SITES, architecture_of


class PlacementError(ValueError):
    """A placement that has no meaning for this adapter or this model."""


@dataclass(frozen=True)
class Target:
    """One adapter's place: the site name, the layer index and the full module name in the model."""

    site: str
    layer: int
    module_name: str


def placement_sites(placement: Mapping, adapter_kind: str) -> tuple[list[str], bool]:
    """The sites a placement names for an adapter kind, and whether they were given explicitly."""
    if placement.get("sites"):
        sites, explicit = list(placement["sites"]), True
    else:
        presets = placement.get("presets") or {}
        if adapter_kind not in presets:
            raise PlacementError(
                f"placement '{placement.get('name')}' has no meaning for adapter '{adapter_kind}' "
                f"(it defines: {', '.join(presets) or 'nothing'})"
            )
        sites, explicit = list(presets[adapter_kind]), False
    unknown = [s for s in sites if s not in SITES]
    if unknown:
        raise PlacementError(
            f"unknown site(s) {unknown} in placement '{placement.get('name')}' (known: {', '.join(SITES)})"
        )
    return sites, explicit


def resolve(config: PretrainedConfig, placement: Mapping, adapter_kind: str) -> list[Target]:
    """Every (site, layer) this placement attaches ``adapter_kind`` to, with the module it wraps.

    Only the model's config is needed (its ``model_type`` and layer count), so a bad placement is reported before
    any weights load.
    """
    arch = architecture_of(config)
    sites, explicit = placement_sites(placement, adapter_kind)
    missing = [s for s in sites if s not in arch.sites]
    if explicit and missing:
        raise PlacementError(f"site(s) {missing} do not exist in model type '{config.model_type}'")
    sliced = [s for s in sites if s in arch.fused]
    if explicit and sliced:
        raise PlacementError(
            f"site(s) {sliced} are slices of one fused projection in model type '{config.model_type}'; adapting a "
            "slice is not supported yet: use a preset placement, which adapts the whole projection"
        )
    n_layers = config.num_hidden_layers
    layers: Sequence[int] = placement.get("layers") or range(n_layers)
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise PlacementError(f"placement.layers {bad} out of range: the model has {n_layers} layers")
    targets, seen = [], set()
    for layer in layers:
        for site in sites:
            module = f"{arch.layers}.{layer}.{arch.sites[site]}" if site in arch.sites else None
            if module is not None and module not in seen:  # a fused projection is adapted once
                seen.add(module)
                targets.append(Target(site, layer, module))
    if not targets:
        raise PlacementError(
            f"placement '{placement.get('name')}' selects no module of model type '{config.model_type}'"
        )
    return targets
