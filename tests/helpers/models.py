"""Tiny models of every family, built from a config in milliseconds, and the paper's trainable-parameter formulas
from a config's numbers alone."""

from __future__ import annotations

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


def paper_count(kind: str, sites: list[str], size: int, dims: dict[str, tuple[int, int]], layers: int) -> int:
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


def families() -> list[str]:
    """Every model family of the site registry: a test parametrized by it covers a new family without an edit."""
    from llm_adapters.model.architectures import ARCHITECTURES

    return list(ARCHITECTURES)


def fused_families() -> list[str]:
    """The families whose attention computes q, k and v in one fused projection (BLOOM, GPT-NeoX, GPT-2)."""
    from llm_adapters.model.architectures import ARCHITECTURES

    return [name for name, arch in ARCHITECTURES.items() if arch.fused]
