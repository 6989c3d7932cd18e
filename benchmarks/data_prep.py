"""Data preparation of a Commonsense170K-sized training set: the first job of a sweep, a later job, and the code before
the data pipeline moved to ``datasets`` (JSON read by hand, every record tokenized alone into Python lists).

Each variant runs in a fresh process, so its peak resident memory is its own (reported with the process's memory
after the imports, which all variants share). The file is 170,420 records made by repeating the commonsense training
files beside the repo (BoolQ, ARC-e, ARC-c, OBQA) in the LLM-Adapters format; the tokenizer is SmolLM2-135M's when
``--model smollm2-135m`` (its converted copy must be in the model cache), else the built-in one.

    python -m benchmarks.data_prep [--model smollm2-135m] [--records 170420]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import SHARED, machine

SOURCES = ["boolq", "ARC-Easy", "ARC-Challenge", "openbookqa"]


def per_record(
    records: Sequence[Mapping[str, str]], tokenizer: Any, cutoff_len: int, train_on_inputs: bool
) -> list[dict[str, list[int]]]:
    """The tokenization before the data pipeline moved to ``datasets``: each record alone, into Python lists. The
    reference the cached and uncached paths are tested against (tests/test_arrow_cache.py)."""
    from llm_adapters.data.templates import training_prompt
    from llm_adapters.data.training_examples import IGNORE_INDEX

    eos, examples = tokenizer.eos_token_id, []
    for record in records:
        ids = tokenizer(
            training_prompt(record["instruction"], record["output"]), truncation=True, max_length=cutoff_len
        )["input_ids"]
        if ids[-1] != eos and len(ids) < cutoff_len:
            ids.append(eos)
        labels = list(ids)
        if not train_on_inputs:
            prompt = tokenizer(training_prompt(record["instruction"]), truncation=True, max_length=cutoff_len)
            labels[: len(prompt["input_ids"])] = [IGNORE_INDEX] * min(len(prompt["input_ids"]), len(labels))
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def _tokenizer(model: str | None) -> Any:
    from llm_adapters.data.builtin_tokenizer import build_tokenizer
    from llm_adapters.job.composition import compose
    from llm_adapters.model.loading import load_tokenizer, pretrained

    if not model:
        return build_tokenizer()
    cfg = compose(f"model={model}")
    return load_tokenizer(pretrained(cfg.model, cfg.paths.model_cache))


def _child(variant: str, path: Path, cache: Path, model: str | None) -> dict[str, Any]:
    """One variant, timed from the moment its imports are done (importing ``datasets`` is timed on its own: a job
    pays it once, whatever the data)."""
    from llm_adapters import files
    from llm_adapters.data import arrow_cache
    from llm_adapters.data.sets import load_records

    tokenizer = _tokenizer(model)
    started = time.perf_counter()
    import datasets  # noqa: F401

    import_seconds = time.perf_counter() - started
    train = {"cutoff_len": 256, "train_on_inputs": True}
    if variant == "first job, 1 process":
        arrow_cache.PARALLEL_FROM = sys.maxsize
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    if variant == "per-record":
        n = len(per_record(load_records(path), tokenizer, 256, True))
    else:
        sha = files.sha256(path)
        n = len(
            arrow_cache.tokenized(
                arrow_cache.read(path, sha, None, cache), sha, tokenizer, train, {"name": "paper"}, cache
            )
        )
    return {
        "variant": variant,
        "examples": n,
        "seconds": time.perf_counter() - start,
        "import_datasets_seconds": import_seconds,
        "rss_after_imports_mb": base_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _write_training_set(path: Path, size: int) -> None:
    pool = [r for name in SOURCES for r in json.loads((SHARED / "dataset" / name / "train.json").read_text())]
    path.write_text(json.dumps([pool[i % len(pool)] for i in range(size)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model YAML whose tokenizer to use (smollm2-135m); default: the built-in")
    parser.add_argument("--records", type=int, default=170_420)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, path, cache = args.child
        print(json.dumps(_child(variant, Path(path), Path(cache), args.model)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path, cache = Path(tmp) / "commonsense_like.json", Path(tmp) / "cache"
        _write_training_set(path, args.records)
        size_mb, rows = path.stat().st_size / 2**20, []
        for variant in ("per-record", "first job, 1 process", "first job", "later job"):
            where = cache.with_name("cache-1") if variant == "first job, 1 process" else cache
            command = [sys.executable, "-m", "benchmarks.data_prep", "--child", variant, str(path), str(where)]
            output = subprocess.run(
                command + (["--model", args.model] if args.model else []), capture_output=True, text=True, check=True
            ).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    before, alone, first, later = (row["seconds"] for row in rows)
    print(f"{args.records} records ({size_mb:.0f} MB of JSON), tokenizer {args.model or 'built-in'}")
    for row in rows:
        print(
            f"  {row['variant']:<21} {row['seconds']:7.2f} s   peak RSS {row['peak_rss_mb']:6.0f} MB "
            f"(after imports {row['rss_after_imports_mb']:.0f} MB; workers {row['peak_worker_rss_mb']:.0f} MB)"
        )
    print(f"  importing datasets: {rows[-1]['import_datasets_seconds']:.2f} s (once per process)")
    print(f"  later job / per-record: {later / before:.3f}   first job / per-record: {first / before:.2f}")
    print(f"  first job with workers / one process: {first / alone:.2f}")
    figures = {
        "later_vs_per_record": later / before,
        "first_vs_per_record": first / before,
        "workers_vs_one_process": first / alone,
        "records": args.records,
        "json_mb": size_mb,
        "tokenizer": args.model or "built-in",
        "variants": rows,
        "machine": machine(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
