"""What the benchmarks share: a LLaMA-architecture model of a few tens of millions of parameters built from a config
(no download), a builder for each adapter on it, and a median-of-repeats timer."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM

from llm_adapters import SHARED_DATA, adapters, weights
from llm_adapters.config import CONF_DIR
from llm_adapters.tokenizer import build_tokenizer

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


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--model", help="a model YAML's name (smollm2-135m), hub id, local path or GGUF instead of the built model"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=BENCH_MODEL["hidden_size"], help="width of the built model")
    parser.add_argument("--layers", type=int, default=BENCH_MODEL["num_hidden_layers"], help="its depth")
    parser.add_argument("--step-only", action="store_true", help="train_throughput: step ratios only, no pipeline")
    return parser.parse_args()


def pretrained(name: str) -> str:
    """What transformers loads for ``name``: the ``name_or_path`` of conf/model/<name>.yaml when there is one, else
    ``name`` itself; GGUF sources are converted once into the job's model cache, as a job would."""
    yaml = CONF_DIR / "model" / f"{name}.yaml"
    source = OmegaConf.load(yaml).name_or_path if yaml.is_file() else name
    cache = OmegaConf.load(CONF_DIR / "paths" / "default.yaml").model_cache
    return weights.resolve(str(source), cache)


def tokenizer_for(name: str | None):
    """The tokenizer of a pretrained ``name`` (left padding, as jobs pad), or the built-in one."""
    from llm_adapters.models import load_tokenizer

    if name is None:
        return build_tokenizer()
    return load_tokenizer({"tokenizer": None, "name_or_path": pretrained(name), "trust_remote_code": False})


def base_model(name: str | None, device: str, seed: int = 0, hidden: int | None = None, layers: int | None = None):
    """The benchmark's frozen base: built from BENCH_MODEL (optionally ``hidden`` wide, with LLaMA's MLP ratio of
    2.6875, and ``layers`` deep), or loaded from ``name``."""
    torch.manual_seed(seed)
    if name:
        return AutoModelForCausalLM.from_pretrained(pretrained(name), dtype=torch.float32).to(device)
    numbers = dict(BENCH_MODEL)
    if hidden:
        numbers.update(hidden_size=hidden, intermediate_size=int(hidden * 2.6875))
    if layers:
        numbers.update(num_hidden_layers=layers)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **numbers)).to(device)


def adapter_config(kind: str) -> dict:
    """The adapter YAML of the project (conf/adapter/<kind>.yaml) as a plain dict."""
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "adapter" / f"{kind}.yaml"))


def with_adapter(model: torch.nn.Module, kind: str, placement: str = "best") -> torch.nn.Module:
    """Put an adapter of the project on the model, as a job would."""
    cfg = adapter_config(kind)
    placement_cfg = OmegaConf.load(CONF_DIR / "placement" / f"{placement}.yaml")
    adapters.prepare(model, cfg, adapters.targets_for(model.config, cfg, placement_cfg))
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
