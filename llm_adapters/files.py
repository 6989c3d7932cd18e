"""Reading and writing the JSON files a job leaves (results.json, plan.json, predictions, adapter configs): atomic
writes so a reader never sees half a file, and reads that survive a stray file. No heavy imports: plan mode, the
score CLI, saving and analysis use it without loading W&B or torch."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from llm_adapters import CONF_DIR

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


_NEARLY_FULL = 1 << 20  # bytes free under which a library's write error is taken for a full disk


@contextmanager
def written_whole(path: Path, tmp: Path) -> Iterator[Path]:
    """Write ``path`` (a file or a folder) as ``tmp`` beside it, renamed onto ``path`` when the block ends: a reader
    never sees half of it. When the block fails, ``tmp`` is removed, so a full disk leaves nothing half-written
    behind; a library that reports the full disk in its own words (safetensors' SafetensorError, torch.save's
    RuntimeError) is raised as ``OSError(ENOSPC)`` naming ``path``, the one-line error ``run.py`` gives for it."""
    try:
        yield tmp
    except BaseException as error:
        full = isinstance(error, Exception) and not isinstance(error, OSError) and _nearly_full(tmp.parent)
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from error
        raise
    if path.is_dir():  # a leftover of an earlier write of the same thing: replaced whole
        shutil.rmtree(path)
    os.replace(tmp, path)


def _nearly_full(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < _NEARLY_FULL
    except OSError:
        return False


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically, so a reader never sees half a file."""
    with written_whole(path, path.with_suffix(path.suffix + ".tmp")) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """One JSON object per line, written atomically."""
    with written_whole(path, path.with_suffix(path.suffix + ".tmp")) as tmp, tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")


def shown(path: Path) -> str:
    """A path as records and logs name it: relative to the working directory when below it (a study's files then
    name no machine's folders and stay true in a clone), absolute otherwise."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(Path.cwd())) if resolved.is_relative_to(Path.cwd()) else str(path)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def yaml_keys(path: Path) -> list[str]:
    """The keys a group config file defines, those of the configs its defaults list builds on included (an entry
    ``/base/x@_here_`` is conf/base/x.yaml; a plain one is a sibling file)."""
    content = OmegaConf.load(path)
    keys: list[str] = []
    for entry in content.get("defaults", []):
        name = str(entry).split("@")[0]
        if name != "_self_":
            keys += yaml_keys(CONF_DIR / f"{name[1:]}.yaml" if name.startswith("/") else path.parent / f"{name}.yaml")
    return [*keys, *(str(k) for k in content if k != "defaults" and k not in keys)]
