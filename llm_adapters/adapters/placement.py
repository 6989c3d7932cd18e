"""Placement: which sites of which layers get an adapter.

A placement config is either a preset (``attn``, ``mlp``, ``both``, ``best``), whose sites for each adapter kind are
in that kind's registry record (where the paper's code attached it), or an explicit ``sites`` list; ``layers``
restricts either to a subset of decoder blocks. Preset sites an architecture lacks (``mlp.gate`` outside gated
MLPs) are skipped, since the paper's code used whatever first MLP projections a family had; explicitly named sites
must exist.

On a fused q/k/v projection a preset adapts the whole projection once, as the paper's code did on BLOOM; explicit
``attn.q``/``attn.k``/``attn.v`` sites adapt only their slice of its output (one adapter per slice).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from transformers import PretrainedConfig

from llm_adapters.errors import ConfigError, PlacementError
from llm_adapters.model.architectures import PROJECTION_SITES, SITES, SUBLAYER_SITES, architecture_of


@dataclass(frozen=True)
class Target:
    """One adapter's place: the site name, the layer index and the full name of the module it wraps (a projection,
    a norm) or becomes (a sublayer adapter, ``<block>.sublayer_adapters.<site>``). ``sliced``: only the site's slice
    of a fused projection's output is adapted."""

    site: str
    layer: int
    module_name: str
    sliced: bool = False


def sublayer_key(site: str) -> str:
    """The name a sublayer adapter has inside its block's ``sublayer_adapters``."""
    return site.replace(".", "_")


def placement_sites(
    placement: Mapping, adapter_kind: str, presets: Mapping[str, Sequence[str]]
) -> tuple[list[str], bool]:
    """The sites a placement names for an adapter kind (whose preset placements are ``presets``), and whether they
    were given explicitly."""
    if placement.get("sites"):
        sites, explicit = list(placement["sites"]), True
    else:
        name = placement.get("name")
        if name not in presets:
            raise PlacementError(
                f"placement '{name}' has no meaning for adapter '{adapter_kind}' "
                f"(its presets: {', '.join(presets) or 'none'}; or give placement.sites)"
            )
        sites, explicit = list(presets[name]), False
    unknown = [s for s in sites if s not in SITES]
    if unknown:
        raise PlacementError(
            f"unknown site(s) {unknown} in placement '{placement.get('name')}' (known: {', '.join(SITES)})"
        )
    return sites, explicit


def resolve(
    config: PretrainedConfig,
    placement: Mapping,
    adapter_kind: str,
    presets: Mapping[str, Sequence[str]],
    accepts: Collection[str] = SITES,
    sliceable: bool = True,
) -> list[Target]:
    """Every (site, layer) this placement attaches ``adapter_kind`` to, with the module it wraps or becomes.

    ``presets`` are the kind's sites per preset placement, ``accepts`` the sites it has a meaning at; ``sliceable``
    whether it can adapt a slice of a fused projection. Only the model's config is needed (its ``model_type`` and
    layer count), so a bad placement is reported before any weights load.
    """
    arch = architecture_of(config)
    sites, explicit = placement_sites(placement, adapter_kind, presets)
    refused = [s for s in sites if s not in accepts]
    if refused:
        raise PlacementError(
            f"adapter '{adapter_kind}' has no meaning at site(s) {refused} (it goes at: {', '.join(accepts)})"
        )
    missing = [s for s in sites if s in PROJECTION_SITES and s not in arch.sites]
    if explicit and missing:
        raise PlacementError(f"site(s) {missing} do not exist in model type '{config.model_type}'")
    sliced = explicit and any(s in arch.fused for s in sites)
    if sliced and not sliceable:
        raise PlacementError(
            f"site(s) {[s for s in sites if s in arch.fused]} are slices of one fused projection in model type "
            f"'{config.model_type}'; adapter '{adapter_kind}' cannot adapt a slice: use a preset placement, which "
            "adapts the whole projection"
        )
    n_layers = config.num_hidden_layers
    layers: Sequence[int] = placement.get("layers") or range(n_layers)
    bad = [i for i in layers if not 0 <= i < n_layers]
    if bad:
        raise ConfigError(f"placement.layers {bad} out of range: the model has {n_layers} layers")
    targets, seen = [], set()
    for layer in layers:
        block = f"{arch.layers}.{layer}"
        for site in sites:
            if site in SUBLAYER_SITES:
                targets.append(Target(site, layer, f"{block}.sublayer_adapters.{sublayer_key(site)}"))
            elif site in arch.norms:
                if (module := f"{block}.{arch.norms[site]}") not in seen:  # GPT-J's sublayers share one norm
                    seen.add(module)
                    targets.append(Target(site, layer, module))
            elif site in arch.sites:
                module = f"{block}.{arch.sites[site]}"
                if sliced and site in arch.fused:
                    targets.append(Target(site, layer, module, sliced=True))
                elif module not in seen:  # a preset adapts a fused projection once
                    seen.add(module)
                    targets.append(Target(site, layer, module))
    if not targets:
        raise PlacementError(
            f"placement '{placement.get('name')}' selects no module of model type '{config.model_type}'"
        )
    return targets
