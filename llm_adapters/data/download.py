"""Fetching the LLM-Adapters data files over HTTP(S) into a local cache: resumable, verified, with a progress bar.

A file is looked for in ``data_dir`` first; when it is not there it comes from the hub dataset ``data_hub`` if one
is named, else it is downloaded from ``data_url`` (the original repository's raw files by default) into
``data_cache``. An interrupted download resumes from its ``.part`` file
with an HTTP Range request. A finished download is accepted only if its size and SHA-256 match ``MANIFEST``; a
file the manifest does not know gets its digest recorded beside it, and the cached copy is checked against that
record each time it is used.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from llm_adapters.data.checksums import MANIFEST
from llm_adapters.data.sets import DataError
from llm_adapters.files import sha256

log = logging.getLogger(__name__)
_CHUNK = 1 << 20


def _expected(relative: str, path: Path) -> tuple[int, str] | None:
    """The pinned (size, digest) of a file: from the manifest, else from the record of its first download."""
    if relative in MANIFEST:
        return MANIFEST[relative]
    record = path.with_name(path.name + ".sha256")
    if record.is_file():
        size, digest = record.read_text().split()
        return int(size), digest
    return None


def _verify(path: Path, expected: tuple[int, str] | None, source: str) -> None:
    if expected is None:
        return
    size, digest = expected
    found_size = path.stat().st_size
    found = sha256(path) if found_size == size else None
    if found != digest:
        raise DataError(
            f"{source}: got {found_size} bytes with sha256 {found or '(not computed)'}, expected {size} bytes "
            f"with sha256 {digest}"
        )


def fetch(url: str, dest: Path, expected: tuple[int, str] | None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (resuming a ``.part`` file), verify it, then move it into place atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length else None
            with (
                part.open("ab" if have else "wb") as out,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=f"download {dest.name}",
                    dynamic_ncols=True,
                    disable=None,  # no bar where stderr is not a terminal (log files, SLURM output)
                ) as bar,
            ):
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the range starts at the end: the .part file is already whole
            pass
        else:
            raise DataError(f"{url}: download failed (HTTP {error.code} {error.reason})") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"{url}: download failed ({reason}); the partial file {part} is kept for a retry") from None
    try:
        _verify(part, expected, url)
    except DataError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest


def from_hub(relative: str, repo_id: str, cache: str) -> Path:
    """A file of a dataset repository on the Hugging Face hub (same layout), through huggingface_hub's own cache,
    checked against the manifest when the manifest knows it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(hf_hub_download(repo_id, relative, repo_type="dataset", cache_dir=Path(cache).expanduser() / "hub"))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        raise DataError(f"{relative}: not found in hub dataset {repo_id} ({type(error).__name__})") from None
    _verify(path, MANIFEST.get(relative), f"hub dataset {repo_id}: {relative}")
    return path


def locate(relative: str, data_dir: str | None, data_url: str | None, data_hub: str | None, cache: str) -> Path:
    """The local path of a data file: from ``data_dir``; else from the hub dataset ``data_hub`` when one is named;
    else from the cache, downloading it from ``data_url`` first when it is not there yet."""
    searched = "no paths.data_dir"
    if data_dir:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"data_dir {root} is not a directory")
        if (root / relative).is_file():
            return root / relative
        searched = f"not in paths.data_dir {root}"
        log.warning("%s: %s; trying %s", relative, searched, f"hub dataset {data_hub}" if data_hub else "the cache")
    if data_hub:
        return from_hub(relative, data_hub, cache)
    cached = Path(cache).expanduser() / relative
    if cached.is_file():
        _verify(cached, _expected(relative, cached), str(cached))
        return cached
    if not data_url:
        raise DataError(f"{relative}: {searched}, not in the cache {cached.parent}, and no data_url to download from")
    url = f"{data_url.rstrip('/')}/{relative}"
    log.info("downloading %s to %s", url, cached)
    try:
        fetch(url, cached, _expected(relative, cached))
    except DataError as error:
        raise DataError(f"{relative}: {searched}, not in the cache; {error}") from None
    if relative not in MANIFEST:
        record = cached.with_name(cached.name + ".sha256")
        record.write_text(f"{cached.stat().st_size} {sha256(cached)}\n")
    return cached
