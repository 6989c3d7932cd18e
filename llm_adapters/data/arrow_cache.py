"""Data files as Arrow tables through Hugging Face ``datasets``, and the tokenized training set cached once per sweep.

A file is validated record by record (``records.validate_records``: the one-line errors naming file and record) the
first time its contents are seen; the verdict is kept under its SHA-256, so a later job reads the memory-mapped
table ``load_dataset("json")`` built and pays nothing for it. The tokenized examples are cached under a key of
everything that decides them (the exact records, the tokenizer, the cutoff, the prompt template, ``train_on_inputs``
and the protocol), so the first job of a sweep tokenizes and every later one with the same data and tokenizer maps
the Arrow file. Every cache entry carries the size and SHA-256 of its files: one that does not match is rebuilt,
never trusted. Entries are built in a private directory and renamed into place, so processes that race (the ranks
of a torchrun job, two jobs of a sweep) never read half an entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_adapters import files, hub
from llm_adapters.data.sets import EvalSet, load_records, validate_records
from llm_adapters.data.templates import training_prompt
from llm_adapters.data.training_examples import Examples, map_tokens
from llm_adapters.errors import DataError

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)
FORMAT = 1  # bump when tokenize_batch changes what it writes: every cached entry is then rebuilt
MANIFEST = "manifest.json"
PARALLEL_FROM = 50_000  # records: below this, worker processes cost more than they save


def digest(*parts: Any) -> str:
    """A short stable hex digest of JSON-able parts (cache keys, the identity of a selection of records)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _manifest(directory: Path, paths: list[Path], **extra: Any) -> dict[str, Any]:
    listed = {str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": files.sha256(p)} for p in paths}
    return {"files": listed, **extra}


def _intact(directory: Path, manifest: Mapping[str, Any]) -> bool:
    """Whether every file a manifest lists is there with its size and digest."""
    for name, want in manifest["files"].items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != want["size"] or files.sha256(path) != want["sha256"]:
            return False
    return True


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def read(path: Path, sha256: str, spec: EvalSet | None, cache: Path) -> Dataset:
    """One data file in the LLM-Adapters format as a table (``load_dataset("json")``), validated as
    ``records.load_records`` validates (for an evaluation set, against ``spec``). ``sha256``: the file's digest."""
    from datasets import load_dataset

    verdict = cache / "validated" / f"{sha256}.{spec.name if spec else 'train'}.json"
    known = _read_manifest(verdict)
    rows = known["rows"] if known else len(load_records(path, spec))  # the one-line error naming file and record
    # Contents seen for the first time get a table built afresh: a table left by anything else is not trusted.
    for attempt in ("reuse_dataset_if_exists", "force_redownload")[0 if known else 1 :]:
        try:
            table = load_dataset(
                "json",
                name=f"sha256-{sha256[:32]}",  # the content, not the path or its mtime, names the cached table
                data_files=str(path),
                split="train",
                cache_dir=str(cache / "records"),
                download_mode=attempt,
            )
        except (OSError, ValueError) as error:  # a cached table cut short (pyarrow's errors are both)
            if attempt == "force_redownload":
                raise
            log.warning("%s: the cached table is unreadable (%s); rebuilding it", path, error)
            continue
        where = Path(table.cache_files[0]["filename"]).parent
        if known is None:
            known = _manifest(where, [Path(f["filename"]) for f in table.cache_files], rows=rows)
            verdict.parent.mkdir(parents=True, exist_ok=True)
            files.write_json(verdict, known)
        if table.num_rows == rows and _intact(where, known):
            return table
        log.warning("%s: the cached table in %s does not match its record; rebuilding it", path, where)
        known = None
    raise RuntimeError(f"{path}: datasets built a table of {table.num_rows} records, the file holds {rows}")


def from_hub(dataset: Mapping[str, Any], cache: Path) -> Path:
    """``dataset.source: hub``: a training set by hub name (or a local dataset directory, which ``load_dataset`` reads
    the same way), each LLM-Adapters field taken from the column ``dataset.columns`` names. Validated record by
    record, then written once as a JSON file in the LLM-Adapters format under the cache: from there it is a data
    file like any other (its SHA-256 in the config hash, its Arrow table, its tokenized cache)."""
    from datasets import load_dataset

    name, subset, split, columns = dataset["hub"], dataset.get("subset"), dataset["split"], dict(dataset["columns"])
    where = f"dataset.hub {name} (split {split})"
    why = None if Path(name).expanduser().exists() else hub.unreachable()
    if why:  # one line now, not the hub client's retries (25 s)
        raise DataError(f"{where}: not a local dataset directory, and {why}; set HF_HUB_OFFLINE=1 to use the cache")
    try:
        table = load_dataset(name, subset, split=split, cache_dir=str(cache / "hub"))
    except Exception as error:  # not found, unreachable, no such split: one line whatever the cause
        raise DataError(f"{where} cannot be loaded: {str(error).splitlines()[0]}") from None
    missing = [column for column in columns.values() if column not in table.column_names]
    if missing:
        raise DataError(f"{where} has no column {missing[0]!r} (dataset.columns; it has {table.column_names})")
    export = cache / "hub" / f"{digest(name, subset, split, columns, [f['filename'] for f in table.cache_files])}.json"
    if not export.is_file():
        picked = table.select_columns(sorted(set(columns.values())))
        records = [{field: row[column] for field, column in columns.items()} for row in picked]
        validate_records(records, where)
        with files.written_whole(export, export.with_name(f".{export.name}.{os.getpid()}")) as partial:
            partial.write_text(json.dumps(records, ensure_ascii=False))
    return export


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """What decides the ids a tokenizer gives: its whole serialized pipeline (vocabulary, merges, normalizer,
    pre-tokenizer, post-processor with its special tokens), its class and its EOS. Not its truncation and padding
    state, which the last call set (each call here passes its own)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        truncation, padding = backend.truncation, backend.padding
        backend.no_truncation()
        backend.no_padding()
        try:
            body = backend.to_str()
        finally:  # put back as found
            if truncation:
                backend.enable_truncation(**truncation)
            if padding:
                backend.enable_padding(**padding)
    else:  # a Python tokenizer: what datasets' own fingerprinting hashes
        from datasets.fingerprint import Hasher

        body = Hasher.hash(tokenizer)
    return digest(type(tokenizer).__name__, tokenizer.eos_token_id, hashlib.sha256(body.encode()).hexdigest())


def cache_key(records_id: str, tokenizer: PreTrainedTokenizerBase, train: Mapping, protocol: Mapping) -> str:
    """The tokenized cache's key: everything the examples depend on, and nothing else (not the seed, the adapter
    or the learning rate, which differ across a sweep's jobs)."""
    template = training_prompt("\x00instruction\x00", "\x00output\x00")
    return digest(
        FORMAT,
        records_id,
        tokenizer_fingerprint(tokenizer),
        int(train["cutoff_len"]),
        bool(train["train_on_inputs"]),
        template,
        dict(protocol),
    )


def _load(entry: Path) -> Examples | None:
    """A cache entry's examples when every file of it is intact; else None (and the entry is removed)."""
    from datasets import Dataset, concatenate_datasets

    manifest = _read_manifest(entry / MANIFEST)
    if manifest is None and not entry.exists():
        return None
    if manifest is None or not _intact(entry, manifest):
        log.warning("tokenized cache %s is damaged: rebuilding it", entry)
        shutil.rmtree(entry, ignore_errors=True)
        return None
    shards = [Dataset.from_file(str(entry / name)) for name in sorted(manifest["files"])]
    return Examples(shards[0] if len(shards) == 1 else concatenate_datasets(shards))


def tokenized(
    records: Dataset,
    records_id: str,
    tokenizer: PreTrainedTokenizerBase,
    train: Mapping,
    protocol: Mapping,
    cache: Path,
) -> Examples:
    """The training examples of ``records`` (identified by ``records_id``), from the cache when a job with the same
    data and tokenizer made them, else tokenized now (``Dataset.map``, batched, worker processes for large sets)
    and cached."""
    key = cache_key(records_id, tokenizer, train, protocol)
    entry = cache / "tokenized" / key
    if (examples := _load(entry)) is not None:
        log.info("tokenized examples reused from %s", entry)
        return examples
    building = entry.with_name(f".{key}.{os.getpid()}.building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    workers = min(os.cpu_count() or 1, 8) if records.num_rows >= PARALLEL_FROM else None
    map_tokens(
        records,
        tokenizer,
        int(train["cutoff_len"]),
        bool(train["train_on_inputs"]),
        cache_file_name=str(building / "tokens.arrow"),
        new_fingerprint=key,
        num_proc=workers,
    )
    shards = sorted(building.glob("*.arrow"))
    files.write_json(building / MANIFEST, _manifest(building, shards, rows=records.num_rows, key=key))
    try:
        building.rename(entry)
    except OSError:  # another process put the same entry in place first: it is the same data
        shutil.rmtree(building, ignore_errors=True)
    log.info("tokenized %d examples into %s", records.num_rows, entry)
    if (examples := _load(entry)) is None:
        raise RuntimeError(f"the tokenized cache {entry} was damaged as soon as it was written")
    return examples
