"""A job's place in a study, computed once: what ``results.json`` (its ``axes`` block), the W&B config, plan mode
and the analysis all read, so a row in a table and the job that made it can never disagree.

The axes are the model, the adapter kind, its placement (none for a kind that takes no placement: the baselines and
prompt tuning), its size (the kind's size key, e.g. LoRA's ``r``; none for a kind without one), the training set,
the evaluation method (``eval.method``; generation for a record older than the key) and the seed. A re-evaluation
of a saved adapter (``mode=eval adapter_path=...``) is placed by the adapter it loaded, not by the command line's
adapter group.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llm_adapters.adapters import REGISTRY


def job_axes(
    config: Mapping[str, Any], adapter: Mapping[str, Any] | None = None, sites: Sequence[str] | None = None
) -> dict[str, Any]:
    """The axes of the job a resolved config describes; ``adapter`` and ``sites``: the adapter config and the sites
    of the targets actually used, if not the config's own (a loaded adapter, placed where it was trained)."""
    adapter = adapter or config["adapter"]
    record = REGISTRY.get(adapter["kind"])
    placed = record is None or record.placed  # a kind this version does not know: report what the config said
    placement = config["placement"]["name"]
    if sites and record is not None:  # a preset with exactly those sites (the config's if it is one), else the sites
        named = [name for name, preset in record.presets.items() if set(preset) == set(sites)]
        placement = placement if placement in named else named[0] if named else "+".join(sorted(set(sites)))
    return {
        "model": config["model"]["name"],
        "adapter": adapter["kind"],
        "placement": placement if placed else None,
        "size": size(adapter),
        "dataset": config["dataset"]["name"],
        "method": (config.get("eval") or {}).get("method", "generate"),
        "seed": config["seed"],
    }


def size(adapter: Mapping[str, Any]) -> Any:
    """The value of the adapter's size key (none for a kind without one, or one this version does not know)."""
    record = REGISTRY.get(adapter.get("kind"))
    return adapter.get(record.size_key) if record is not None and record.size_key else None


def axes_of(results: Mapping[str, Any]) -> dict[str, Any]:
    """The axes of a results.json record: its ``axes`` block, or for a record written before there was one, its
    top-level fields and the size of the adapter it ran (or loaded)."""
    if "axes" in results:
        return dict(results["axes"])
    adapter = results.get("loaded_adapter") or (results.get("config") or {}).get("adapter") or {}
    axes = {key: results.get(key) for key in ("model", "adapter", "placement", "dataset", "seed")}
    return {**axes, "size": size({**adapter, "kind": results.get("adapter")}), "method": "generate"}


# Not what a cell is a setting of: the seed is what cells pool over; where files live and how a job logs decide no
# number (the config hash leaves them out too).
NOT_A_SETTING = ("seed", "paths", "logger", "power")


def settings(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every resolved config value as ``cfg/<dotted key>`` (lists as JSON text, so they compare and group), the seed,
    ``paths`` and ``logger`` left out: what tells one table cell's jobs from another's."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if dotted in NOT_A_SETTING:
            continue
        if isinstance(value, Mapping):
            out |= settings(value, f"{dotted}.")
        else:
            out[f"cfg/{dotted}"] = json.dumps(value) if isinstance(value, list | tuple) else value
    return out
