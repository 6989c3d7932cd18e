"""The adapter family behind one small interface.

Three shapes of adapter:

- on a projection (``KINDS``): ``wrap(base_layer, site, cfg, rows) -> nn.Module`` wraps one frozen projection (all
  of it, or ``rows`` of a fused one) and keeps it as ``base_layer``;
- on a sublayer (``SUBLAYER_KINDS``): a bottleneck in a block's ``sublayer_adapters``, wired in by hooks;
- on the whole model (``MODEL_LEVEL``): prefix and prompt tuning, through hooks on the model's forward.

``COMPOSITES`` put several kinds on one model (MAM: prefix tuning at attention plus a scaled parallel adapter beside
the MLP), each reading its own keys from the one adapter config. ``prepare`` freezes the model and adds the adapter,
so only adapter parameters are left trainable; the model code never learns which kind it carries. The two baselines
need no placement: ``none`` evaluates the frozen base model zero-shot, ``full`` fine-tunes every parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import nn
from transformers import PretrainedConfig

from llm_adapters.adapters import bottleneck, ia3, lora, prefix, prompt
from llm_adapters.architectures import BOUNDARY_SITES, PROJECTION_SITES, SUBLAYERS, architecture_of
from llm_adapters.placement import PlacementError, Target, resolve

Wrap = Callable[..., nn.Module]

KINDS: dict[str, Wrap] = {
    "lora": lora.wrap,
    "dora": lora.wrap_dora,
    "series": bottleneck.wrap_series,
    "adapterh": bottleneck.wrap_series,
    "parallel": bottleneck.wrap_parallel,
    "ia3": ia3.wrap,
}
SUBLAYER_KINDS = ("series", "adapterh", "scaled_parallel")

# Adapters that act on the whole model rather than on projections: ``attach(model, cfg)``.
MODEL_LEVEL: dict[str, Callable[[nn.Module, Mapping], None]] = {"prefix": prefix.attach, "prompt": prompt.attach}

COMPOSITES = {"mam": ("prefix", "scaled_parallel")}

BASELINES = ("none", "full")

# Kinds that take no placement at all: the baselines, and prompt tuning, which acts on the input embeddings.
UNPLACED = (*BASELINES, "prompt")

# The sites each kind has a meaning at (a placement naming another is an error, or a skipped job in a sweep), and
# the kinds that can adapt a slice of a fused q/k/v projection.
ACCEPTS = {
    "lora": PROJECTION_SITES,
    "dora": PROJECTION_SITES,
    "ia3": PROJECTION_SITES,
    "parallel": PROJECTION_SITES,
    "series": (*PROJECTION_SITES, *BOUNDARY_SITES),
    "adapterh": (*PROJECTION_SITES, *BOUNDARY_SITES),
    "scaled_parallel": tuple(SUBLAYERS),
    "mam": tuple(SUBLAYERS),  # where its scaled parallel adapter goes; its prefix is at every attention
    "prefix": ("attn.k", "attn.v"),
}
SLICEABLE = ("lora", "dora", "parallel", "ia3")

# The key that sets each adapter's size, the axis of the paper's configuration study.
SIZE_KEYS = {
    "series": "bottleneck_size",
    "adapterh": "bottleneck_size",
    "parallel": "bottleneck_size",
    "scaled_parallel": "bottleneck_size",
    "mam": "bottleneck_size",
    "lora": "r",
    "dora": "r",
    "prefix": "num_virtual_tokens",
    "prompt": "num_virtual_tokens",
}


def known_kinds() -> list[str]:
    """Every ``adapter.kind`` this harness builds."""
    return [*KINDS, "scaled_parallel", *MODEL_LEVEL, *COMPOSITES, *BASELINES]


def targets_for(config: PretrainedConfig, adapter_cfg: Mapping, placement_cfg: Mapping) -> list[Target]:
    """The modules an adapter goes to, from the model's config alone (none for a kind that takes no placement)."""
    kind = adapter_cfg["kind"]
    if kind not in known_kinds():
        raise PlacementError(f"unknown adapter.kind '{kind}' (known: {', '.join(known_kinds())})")
    if kind in UNPLACED:
        if placement_cfg.get("sites") or placement_cfg.get("layers"):
            raise PlacementError(f"adapter '{kind}' takes no placement: placement.sites/layers cannot apply to it")
        return []
    targets = resolve(config, placement_cfg, kind, ACCEPTS[kind], kind in SLICEABLE)
    if kind in MODEL_LEVEL:
        if placement_cfg.get("layers"):
            raise PlacementError(f"adapter '{kind}' acts on every layer: placement.layers cannot restrict it")
        return []
    return targets


def prepare(model: nn.Module, adapter_cfg: Mapping, targets: Sequence[Target]) -> None:
    """Make ``model`` what the adapter config asks for: adapters on ``targets``, or a baseline's trainable set."""
    kind = adapter_cfg["kind"]
    if kind in BASELINES:
        model.requires_grad_(kind == "full")
        return
    model.requires_grad_(False)
    parts = COMPOSITES.get(kind, (kind,))
    for part in (p for p in parts if p not in MODEL_LEVEL):  # first: inject freezes everything it finds
        inject(model, {**adapter_cfg, "kind": part}, targets)
    for part in (p for p in parts if p in MODEL_LEVEL):
        MODEL_LEVEL[part](model, adapter_cfg)


def inject(model: nn.Module, adapter_cfg: Mapping, targets: Sequence[Target]) -> None:
    """Freeze ``model`` and put an adapter of kind ``adapter_cfg['kind']`` at each target."""
    kind = adapter_cfg["kind"]
    if kind not in KINDS and kind not in SUBLAYER_KINDS:
        raise ValueError(f"unknown adapter.kind '{kind}' (known: {', '.join(known_kinds())})")
    model.requires_grad_(False)
    arch = architecture_of(model.config)
    for target in targets:
        parent_name, _, attr = target.module_name.rpartition(".")
        if target.site not in PROJECTION_SITES:
            block = model.get_submodule(parent_name.removesuffix(".sublayer_adapters"))
            if not hasattr(block, "sublayer_adapters"):
                block.sublayer_adapters = nn.ModuleDict()
            block.sublayer_adapters[attr] = bottleneck.attach_sublayer(block, arch, target.site, adapter_cfg)
            continue
        parent = model.get_submodule(parent_name)
        rows = arch.slice_rows(target.site, model.config) if target.sliced else None
        setattr(parent, attr, KINDS[kind](getattr(parent, attr), target.site, adapter_cfg, rows))


def trainable_state_dict(model: nn.Module) -> dict[str, object]:
    """The trainable parameters by name: what an adapter checkpoint holds."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


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


def merge_lora(model: nn.Module) -> int:
    """Fold every mergeable adapter (LoRA, DoRA, (IA)³) into its frozen weight for evaluation; returns how many."""
    layers = [m for m in model.modules() if isinstance(m, lora.LoRALinear | ia3.IA3Linear)]
    for layer in layers:
        layer.merge()
    return len(layers)
