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

from llm_adapters import adapters
from llm_adapters.config import CONF_DIR

SHARED = CONF_DIR.parent.parent / "shared" / "datasets" / "llm-adapters"  # the LLM-Adapters files, when beside the repo

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
    parser.add_argument("--model", help="a hub id or local path instead of the built benchmark model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=BENCH_MODEL["hidden_size"], help="width of the built model")
    parser.add_argument("--layers", type=int, default=BENCH_MODEL["num_hidden_layers"], help="its depth")
    parser.add_argument("--step-only", action="store_true", help="train_throughput: step ratios only, no pipeline")
    return parser.parse_args()


def base_model(name: str | None, device: str, seed: int = 0, hidden: int | None = None, layers: int | None = None):
    """The benchmark's frozen base: built from BENCH_MODEL (optionally ``hidden`` wide, with LLaMA's MLP ratio of
    2.6875, and ``layers`` deep), or loaded from ``name``."""
    torch.manual_seed(seed)
    if name:
        return AutoModelForCausalLM.from_pretrained(name).to(device)
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
