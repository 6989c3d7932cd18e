"""Iso-parameter sizing (``+budget=...``): each adapter kind's size solved for a target number of trainable
parameters, so that a study compares methods at the same budget rather than at each one's default size.

The target is ``budget.trainable`` (a count) or ``budget.fraction`` of the base model's parameters. The size key of
the kind (its record's ``size_key``: LoRA's ``r``, a bottleneck's ``bottleneck_size``, VeRA's ``r``, OFT's block
size, FourierFT's ``n_frequency``...) is searched with the exact counts plan mode uses (the model built on the meta
device from its config, no weights): sizes doubled until one passes the target (up to ``budget.max_size``, by
default 8 times the widest projection), then interpolation between the two around it (sizes a kind refuses, such as
an OFT block size that does not divide the features, are passed over). The size whose count is closest to the
target is written into the adapter config before anything else reads it, so the job, its config hash and its results
record the solved size; ``budget.target`` records the count aimed at. A target no size reaches within
``budget.tolerance`` is a ``BudgetError`` naming the counts the kind reaches: one line alone, a skipped job in a
sweep (the combination has no meaning).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import AutoModelForCausalLM

from llm_adapters import adapters
from llm_adapters.adapters.registry import REGISTRY
from llm_adapters.errors import BudgetError, ConfigError, InputError
from llm_adapters.model.loading import load_tokenizer, model_config

KEYS = ("trainable", "fraction", "tolerance", "max_size")


def closest_size(count: Callable[[int], int | None], target: int, largest: int) -> tuple[int, int] | None:
    """The size and count closest to ``target``, or None when no size up to ``largest`` is accepted. ``count`` is
    None for a size the kind refuses, and grows with the size: the sizes double until one passes the target, then
    interpolation between the two around it (exact in a step or two where the count is linear in the size)."""
    seen: dict[int, int] = {}
    size, low, high, refused, floor = 1, None, None, 0, 0
    while size <= largest and high is None and refused < 3:  # three refusals after a count: past the kind's range
        if (n := count(size)) is not None:
            seen[size], refused = n, 0
            low, high = (size, None) if n <= target else (low, size)
        elif not seen:
            floor = size  # refused below the first size accepted (AdaLoRA's init_r up to its target_r)
        refused += n is None and bool(seen)
        size *= 2
    while low is None and high is not None and high - floor > 1:  # the first accepted size already passes: halve
        middle = (floor + high) // 2
        if (n := count(middle)) is None:
            floor = middle
        else:
            seen[middle] = n
            low, high = (middle, high) if n <= target else (low, middle)
    if high is None and low is not None and low < largest and (n := count(largest)) is not None:
        seen[largest] = n  # the largest size is the last to try before giving up on passing the target
        high = largest if n > target else None
    while low is not None and high is not None and high - low > 1:
        guess = low + round((target - seen[low]) * (high - low) / max(seen[high] - seen[low], 1))
        middle = min(max(guess, low + 1), high - 1)
        if (n := count(middle)) is None and (n := count(middle := (low + high) // 2)) is None:
            break  # refused around here (a block size that divides nothing): the closest seen so far
        seen[middle] = n
        low, high = (middle, high) if n <= target else (low, middle)
    if not seen:
        return None
    size = min(seen, key=lambda s: (abs(seen[s] - target), s))
    return size, seen[size]


def _check(budget: Mapping) -> None:
    unknown = sorted(set(budget) - {*KEYS, "target"})
    if unknown:
        raise ConfigError(f"budget.{unknown[0]}: no such key (budget has {', '.join(KEYS)})")
    if (budget.get("trainable") is None) == (budget.get("fraction") is None):
        raise ConfigError("budget: set exactly one of budget.trainable (a count) and budget.fraction (of the base)")
    if budget.get("fraction") is not None and not 0 < float(budget["fraction"]) < 1:
        raise ConfigError(f"budget.fraction must be in (0, 1) (got {budget['fraction']})")
    if budget.get("trainable") is not None and int(budget["trainable"]) < 1:
        raise ConfigError(f"budget.trainable must be a positive integer (got {budget['trainable']})")
    if budget.get("max_size") is not None and (isinstance(budget["max_size"], bool) or int(budget["max_size"]) < 1):
        raise ConfigError(f"budget.max_size must be a positive integer or null (got {budget['max_size']})")
    if not 0 < float(budget.get("tolerance", 0.25)) <= 1:
        raise ConfigError(f"budget.tolerance must be in (0, 1] (got {budget.get('tolerance')})")


@functools.cache
def _solve(model_json: str, adapter_json: str, placement_json: str, budget_json: str) -> tuple[int, int, int]:
    """(size, its trainable count, the target): cached, since every seed of a sweep asks the same."""
    model_cfg, adapter_cfg = OmegaConf.create(json.loads(model_json)), json.loads(adapter_json)
    placement_cfg, budget = OmegaConf.create(json.loads(placement_json)), json.loads(budget_json)
    tokenizer = None if model_cfg.name_or_path else load_tokenizer(model_cfg)
    config = model_config(model_cfg, tokenizer, offline=True)
    with torch.device("meta"):
        base_total = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    target = int(budget["trainable"]) if budget.get("trainable") is not None else round(budget["fraction"] * base_total)
    kind, key = adapter_cfg["kind"], REGISTRY[adapter_cfg["kind"]].size_key
    targets = adapters.targets_for(config, adapter_cfg, placement_cfg)

    def count(size: int) -> int | None:
        try:
            return adapters.trainable_count({**adapter_cfg, key: size}, targets, config)
        except (InputError, ValueError, RuntimeError):  # a size the kind (or PEFT) refuses on these modules
            return None

    if key is None:
        raise BudgetError(f"budget: adapter '{kind}' has no size key to solve for a budget")
    widest = max(config.hidden_size, getattr(config, "intermediate_size", None) or 4 * config.hidden_size)
    largest = int(budget["max_size"]) if budget.get("max_size") is not None else 8 * widest
    found = closest_size(count, target, largest)
    if found is None or abs(found[1] - target) > float(budget.get("tolerance", 0.25)) * target:
        closest = f"; the closest, adapter.{key}={found[0]}, gives {found[1]:,}" if found else ""
        raise BudgetError(
            f"budget: no adapter.{key} of '{kind}' gives {target:,} trainable parameters within "
            f"{float(budget.get('tolerance', 0.25)):.0%} here (adapter.{key} 1 to {largest} searched{closest})"
        )
    return found[0], found[1], target


def apply(cfg: DictConfig) -> DictConfig:
    """``cfg`` with its adapter's size solved for ``cfg.budget`` (unchanged without a budget, or for a baseline)."""
    if cfg.get("budget") is None or REGISTRY[cfg.adapter.kind].trains != "adapter":
        return cfg  # the baselines (zero-shot, full fine-tuning) have no size to solve: a study's reference rows
    budget = OmegaConf.to_container(cfg.budget, resolve=True)
    _check(budget)
    budget.pop("target", None)
    as_json = [
        json.dumps(OmegaConf.to_container(part, resolve=True), sort_keys=True)
        for part in (cfg.model, cfg.adapter, cfg.placement)
    ]
    size, _, target = _solve(*as_json, json.dumps(budget, sort_keys=True))
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.adapter[REGISTRY[cfg.adapter.kind].size_key] = size
        cfg.budget.target = target
    return cfg
