"""Reading and writing the JSON files a job leaves (results.json, plan.json, predictions, adapter configs): atomic
writes so a reader never sees half a file, and reads that survive a stray file. No heavy imports: plan mode, the
score CLI, saving and analysis use it without loading W&B or torch."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def read_results(path: Path) -> dict[str, Any] | None:
    """A results.json as a dict, or None with a warning when it is not one (empty, truncated, a list): one stray
    file must not stop a resume scan, a sweep's summary or an analysis."""
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        log.warning("ignoring %s: not readable as JSON (%s)", path, error)
        return None
    if not isinstance(results, dict):
        log.warning("ignoring %s: not a JSON object", path)
        return None
    return results


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
