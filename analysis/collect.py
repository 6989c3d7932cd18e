"""Every job's results.json under some directories, as one pandas DataFrame (one row per job, failed and skipped
jobs included, never dropped)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from llm_adapters.adapters import SIZE_KEYS


def row(results: Mapping[str, Any], job: str) -> dict[str, Any]:
    """One job's row: its setting, status, parameter share and per-set accuracy (``acc/<set>``, ``n/<set>``)."""
    config = results.get("config", {})
    adapter = results.get("adapter")
    size_key = SIZE_KEYS.get(adapter)
    out: dict[str, Any] = {
        "job": job,
        "status": results.get("status"),
        "reason": results.get("reason"),
        "model": results.get("model"),
        "adapter": adapter,
        "placement": results.get("placement"),
        "size": config.get("adapter", {}).get(size_key) if size_key else None,
        "train_set": results.get("dataset"),
        "seed": results.get("seed"),
        "protocol": (results.get("protocol") or {}).get("name"),
        "trainable": (results.get("params") or {}).get("trainable"),
        "trainable_pct": (results.get("params") or {}).get("trainable_pct"),
    }
    for name, metrics in (results.get("eval") or {}).items():
        out[f"acc/{name}"] = metrics["accuracy"]
        out[f"n/{name}"] = metrics["n"]
    return out


def load(directories: Iterable[Path]) -> pd.DataFrame:
    """All results.json files below the directories, in path order."""
    rows = []
    for directory in directories:
        for path in sorted(Path(directory).rglob("results.json")):
            rows.append(row(json.loads(path.read_text()), str(path.parent)))
    return pd.DataFrame(rows)
