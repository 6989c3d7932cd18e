"""One record per adapter kind: everything the harness knows about a kind, declared beside the kind's code.

Each adapter module ends with ``register(AdapterSpec(...))`` for the kinds it implements; the package imports every
module in this folder, so a new kind is its module and its YAML (``conf/adapter/<kind>.yaml``), nothing else. Every
list the rest of the code needs (the known kinds, the ones without a placement, the size axis, the test matrix, the
benchmarks' kinds) is computed from these records, never written out again.

A spec says how the kind is put on a model, in one of five ways:

- ``wrap(base_layer, site, cfg, rows) -> nn.Module`` wraps one frozen projection (all of it, or ``rows`` of a fused
  one) and keeps it as ``base_layer``;
- ``sublayer(block, arch, site, cfg) -> nn.Module`` builds the module for a sublayer site of one block (wired in by
  hooks; it lives in the block's ``sublayer_adapters``); a kind may have both (series: projections and boundaries);
- ``attach(model, cfg)`` acts on the whole model (prefix and prompt tuning, through hooks on its forward);
- ``inject(model, cfg, targets)`` puts the kind on all its targets at once (the PEFT bridge: PEFT's own layers);
- ``parts``: a composite, several registered kinds on one model, each reading its own keys from the one config;

or, for the two baselines, none of these: ``trains`` says what trains (``all``: full fine-tuning; ``nothing``: the
frozen model evaluated zero-shot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

Wrap = Callable[..., nn.Module]
PEFT_PREFIX = "base_model.model."  # where PEFT's saved weight names start
# (model, adapter config, targets) -> (weights by PEFT's names, PEFT's adapter_config.json), or None where the saved
# adapter has no PEFT equivalent (a slice of a fused projection).
Export = Callable[[nn.Module, Mapping, str, Sequence[Any]], tuple[dict, dict] | None]
# (PEFT's adapter_config.json, its weights' names, model config, the directory's name for errors) -> (our adapter
# config, targets): a PEFT checkpoint of the kind given as ``adapter_path``.
Import = Callable[[Mapping, Sequence[str], Any, str], tuple[dict, list]]
# (adapter config, targets, model config) -> the trainable parameters the kind's definition gives, from the config's
# numbers alone (no weights): the matrix test holds every built adapter to it.
Count = Callable[[Mapping, Sequence[Any], Any], int]
# What a numeric adapter key may hold, checked before anything loads (``keys`` of a record).
KEY_RULES = {
    "count": "a positive integer",
    "positive": "a positive number",
    "probability": "a probability in [0, 1)",
}


@dataclass(frozen=True)
class AdapterSpec:
    """What one adapter kind is: how it is built, where it may go, and how it is sized, merged and exported.

    ``sites``: the sites the kind has a meaning at (a placement naming another is an error, a skipped job in a
    sweep). ``presets``: per preset placement name, the sites it puts the kind at (a preset missing here has no
    meaning for the kind). ``placed``: false for a kind that takes no placement at all. ``sliceable``: it can adapt
    a slice of a fused q/k/v projection. ``size_key``: the adapter key that sets its size, the axis of the paper's
    configuration study. ``mergeable``: it folds into the frozen weights for evaluation (its modules have
    ``merge()``). ``virtual_tokens``: it puts extra positions in front of the input (in the KV cache).
    ``export``: writes its PEFT equivalent beside the native checkpoint; ``peft_read``: reads a PEFT checkpoint whose
    ``peft_type`` is the kind's ``peft_type`` (PEFT's name for it), given as ``adapter_path``. ``choices``: adapter
    keys that take one of a fixed set of values, and ``keys``: numeric adapter keys with their rule (``KEY_RULES``),
    both checked before anything loads. ``count``: its closed-form trainable-parameter count (a composite's is its
    parts' sum). ``check_keys``: checks the adapter config's keys itself, where they are not those of its YAML alone
    (a bridged PEFT method accepts every field of PEFT's config class).
    """

    kind: str
    wrap: Wrap | None = None
    sublayer: Wrap | None = None
    attach: Callable[[nn.Module, Mapping], None] | None = None
    inject: Callable[[nn.Module, Mapping, Sequence[Any]], None] | None = None
    parts: tuple[str, ...] = ()
    trains: str = "adapter"
    sites: tuple[str, ...] = ()
    presets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    placed: bool = True
    sliceable: bool = False
    size_key: str | None = None
    mergeable: bool = False
    virtual_tokens: bool = False
    export: Export | None = None
    peft_type: str | None = None
    peft_read: Import | None = None
    choices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)
    count: Count | None = None
    check_keys: Callable[[Mapping], None] | None = None


REGISTRY: dict[str, AdapterSpec] = {}


def register(spec: AdapterSpec) -> AdapterSpec:
    """Add a kind; a second record for one kind is a programming error, caught at import."""
    if spec.kind in REGISTRY:
        raise RuntimeError(f"adapter kind '{spec.kind}' registered twice")
    if spec.trains not in ("adapter", "all", "nothing"):
        raise RuntimeError(f"adapter kind '{spec.kind}': trains must be adapter, all or nothing")
    if unknown := set(spec.keys.values()) - set(KEY_RULES):
        raise RuntimeError(f"adapter kind '{spec.kind}': unknown key rule(s) {sorted(unknown)} (known: {KEY_RULES})")
    if spec.trains == "adapter" and spec.count is None and not spec.parts:
        raise RuntimeError(f"adapter kind '{spec.kind}': give its closed-form trainable count (count=...)")
    REGISTRY[spec.kind] = spec
    return spec


def spec(kind: str) -> AdapterSpec:
    """The record of ``kind``; an unknown kind is a ``KeyError`` naming the known ones."""
    if kind not in REGISTRY:
        raise KeyError(f"unknown adapter.kind '{kind}' (known: {', '.join(known_kinds())})")
    return REGISTRY[kind]


def known_kinds() -> list[str]:
    """Every ``adapter.kind`` this harness builds, adapters first (in name order), then the two baselines."""
    return sorted(REGISTRY, key=lambda kind: (REGISTRY[kind].trains != "adapter", kind))


def adapter_kinds() -> list[str]:
    """The kinds that add trainable modules to a frozen model (no baseline): the rows of every matrix."""
    return [kind for kind in known_kinds() if REGISTRY[kind].trains == "adapter"]
