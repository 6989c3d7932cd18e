"""What the benchmarks share: a LLaMA-architecture model of a few tens of millions of parameters built from a config
(no download), a builder for each adapter on it, and a median-of-repeats timer."""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM

from llm_adapters import CONF_DIR, SHARED_DATA, adapters
from llm_adapters.data.builtin_tokenizer import build_tokenizer
from llm_adapters.job.composition import compose
from llm_adapters.model import weights

SHARED = SHARED_DATA  # the LLM-Adapters files, when beside the repo

# ~34M parameters: big enough that matrix products dominate, small enough for 2 CPU cores in minutes.
BENCH_MODEL = {
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "vocab_size": 8000,
    "max_position_embeddings": 1024,
}


def parser(description: str) -> argparse.ArgumentParser:
    """The options every model benchmark shares; a benchmark adds its own before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--model", help="a model YAML's name (smollm2-135m), hub id, local path or GGUF instead of the built model"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=BENCH_MODEL["hidden_size"], help="width of the built model")
    parser.add_argument("--layers", type=int, default=BENCH_MODEL["num_hidden_layers"], help="its depth")
    return parser


def machine() -> dict[str, object]:
    """What the figures were measured on, for every JSON line: the CPU's model and the flags that decide which
    matrix kernels run (bf16 units), the threads torch uses, torch's CPU capability, and the GPU if one is used."""
    info = {"cpu": platform.processor() or platform.machine(), "cpu_flags": [], "threads": torch.get_num_threads()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        fields: dict[str, str] = {}
        for line in cpuinfo.read_text().splitlines():  # the first processor's lines: all cores are alike here
            key, colon, value = line.partition(":")
            if colon:
                fields.setdefault(key.strip(), value.strip())
        info["cpu"] = fields.get("model name", info["cpu"])
        flags = fields.get("flags", "").split()
        info["cpu_flags"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    info["torch"] = torch.__version__
    info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def pretrained(name: str) -> str:
    """What transformers loads for ``name``: the ``name_or_path`` of conf/model/<name>.yaml when there is one, else
    ``name`` itself; GGUF sources are converted once into the job's model cache, as a job would."""
    named = (CONF_DIR / "model" / f"{name}.yaml").is_file()
    cfg = compose(f"model={name}") if named else compose()
    return weights.resolve(str(cfg.model.name_or_path if named else name), cfg.paths.model_cache)


def tokenizer_for(name: str | None):
    """The tokenizer of a pretrained ``name`` (left padding, as jobs pad), or the built-in one."""
    from llm_adapters.model.loading import load_tokenizer

    if name is None:
        return build_tokenizer()
    return load_tokenizer({"tokenizer": None, "name_or_path": pretrained(name), "trust_remote_code": False})


def base_model(
    name: str | None, device: str, seed: int = 0, hidden: int | None = None, layers: int | None = None, tokenizer=None
):
    """The benchmark's frozen base: built from BENCH_MODEL (optionally ``hidden`` wide, with LLaMA's MLP ratio of
    2.6875 rounded to a multiple of 32, ``layers`` deep, and the vocabulary and special tokens of ``tokenizer``), or
    loaded from ``name``."""
    torch.manual_seed(seed)
    if name:
        return AutoModelForCausalLM.from_pretrained(pretrained(name), dtype=torch.float32).to(device)
    numbers = dict(BENCH_MODEL)
    if hidden:
        # SmolLM2's ratio, rounded to a multiple of 32 as real widths are (and as OFT's default block size needs)
        numbers.update(hidden_size=hidden, intermediate_size=32 * max(1, round(hidden * 2.6875 / 32)))
    if layers:
        numbers.update(num_hidden_layers=layers)
    if tokenizer is not None:
        numbers.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        numbers.update(eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **numbers)).to(device)


def job_config(kind: str, placement: str = "best", *overrides: str):
    """A job's whole config for ``adapter=<kind> placement=<placement>``, composed by Hydra as ``python run.py``
    composes it (with ``conf/base`` inheritance), so a benchmark measures exactly what a job would run."""
    return compose(f"adapter={kind}", f"placement={placement}", *overrides)


def adapter_config(kind: str) -> dict:
    """The resolved ``adapter`` section of a job with this kind, as a plain dict."""
    return OmegaConf.to_container(job_config(kind).adapter, resolve=True)


def with_adapter(model: torch.nn.Module, kind: str, placement: str = "best") -> torch.nn.Module:
    """Put an adapter of the project on the model, as a job would."""
    cfg = job_config(kind, placement)
    adapter_cfg = OmegaConf.to_container(cfg.adapter, resolve=True)
    adapters.prepare(model, adapter_cfg, adapters.targets_for(model.config, adapter_cfg, cfg.placement))
    return model


def median_seconds(step: Callable[[], None], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``step`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
