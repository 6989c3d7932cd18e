"""The adapter family behind one small interface: a kind is a function that wraps one frozen projection.

``KINDS`` maps each ``adapter.kind`` to ``wrap(base_layer, site, cfg) -> nn.Module``; ``inject`` freezes the model
and swaps every placement target for its wrapper, so only adapter parameters are left trainable. Every wrapper keeps
the frozen projection as ``base_layer``. The model code never learns which kind it carries. The two baselines need
no placement: ``none`` evaluates the frozen base model zero-shot, ``full`` fine-tunes every parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import nn
from transformers import PretrainedConfig

from llm_adapters.adapters import bottleneck, lora, prefix
from llm_adapters.placement import PlacementError, Target, resolve

Wrap = Callable[[nn.Linear, str, Mapping], nn.Module]

KINDS: dict[str, Wrap] = {
    "lora": lora.wrap,
    "dora": lora.wrap_dora,
    "series": bottleneck.wrap_series,
    "parallel": bottleneck.wrap_parallel,
}


# Adapters that act on the whole model rather than on projections: ``attach(model, cfg)``.
MODEL_LEVEL: dict[str, Callable[[nn.Module, Mapping], None]] = {"prefix": prefix.attach}

BASELINES = ("none", "full")

# The key that sets each adapter's size, the axis of the paper's configuration study.
SIZE_KEYS = {
    "series": "bottleneck_size",
    "parallel": "bottleneck_size",
    "lora": "r",
    "dora": "r",
    "prefix": "num_virtual_tokens",
}


def targets_for(config: PretrainedConfig, adapter_cfg: Mapping, placement_cfg: Mapping) -> list[Target]:
    """The modules an adapter goes to, from the model's config alone (none for a baseline)."""
    kind = adapter_cfg["kind"]
    if kind in BASELINES:
        return []
    targets = resolve(config, placement_cfg, kind)  # also rejects a placement that has no meaning for the kind
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
    elif kind in MODEL_LEVEL:
        model.requires_grad_(False)
        MODEL_LEVEL[kind](model, adapter_cfg)
    else:
        inject(model, adapter_cfg, targets)


def inject(model: nn.Module, adapter_cfg: Mapping, targets: Sequence[Target]) -> None:
    """Freeze ``model`` and wrap each target module with an adapter of kind ``adapter_cfg['kind']``."""
    kind = adapter_cfg["kind"]
    if kind not in KINDS:
        raise ValueError(f"unknown adapter.kind '{kind}' (known: {', '.join(KINDS)})")
    model.requires_grad_(False)
    for target in targets:
        parent_name, _, attr = target.module_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base_layer = getattr(parent, attr)
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"{target.module_name} is a {type(base_layer).__name__}, not an nn.Linear")
        setattr(parent, attr, KINDS[kind](base_layer, target.site, adapter_cfg))


def trainable_state_dict(model: nn.Module) -> dict[str, object]:
    """The trainable parameters by name: what an adapter checkpoint holds."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def set_adapter_dropout(model: nn.Module, active: bool) -> None:
    """Switch the dropout inside every adapter on or off, whatever mode the rest of the model is in.

    The paper's evaluate.py put the model in eval mode only on its CPU path, so on GPUs the freshly loaded adapter
    layers generated with dropout on; protocol=paper reproduces that, protocol=fixed turns it off.
    """
    for module in model.modules():
        if hasattr(module, "base_layer"):
            for name, child in module.named_modules():
                if isinstance(child, nn.Dropout) and not name.startswith("base_layer"):
                    child.train(active)


def merge_lora(model: nn.Module) -> int:
    """Merge every LoRA layer into its frozen weight (for evaluation); returns how many were merged."""
    layers = [m for m in model.modules() if isinstance(m, lora.LoRALinear)]
    for layer in layers:
        layer.merge()
    return len(layers)
