"""Prefix tuning (Li & Liang, 2021) as the paper's code used it: trainable keys and values for every layer,
seen by every token as if they had come before the input.

``num_virtual_tokens`` rows of one embedding (N(0, 1) init, as the paper's PEFT fork; or, with
``prefix_projection``, an embedding through a two-layer tanh MLP, Li & Liang's reparameterisation) give each
layer's key and value prefix. A forward pre-hook on the model puts them into the KV cache before the first token
is processed (training, and the first step of generation), widens the attention mask to cover them, and offsets
the positions by the prefix length as the paper's code did; later generation steps find them in the cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from llm_adapters.adapters.registry import AdapterSpec, register
from llm_adapters.adapters.virtual_tokens import VirtualTokens, cover_virtual_tokens
from llm_adapters.model.architectures import cache_argument


class PrefixEncoder(VirtualTokens):
    """(num_virtual_tokens, layers · 2 · kv_dim) prefix values, optionally through a reparameterisation MLP."""

    def __init__(self, config: Any, num_virtual_tokens: int, projection: bool, hidden: int) -> None:
        super().__init__()
        if num_virtual_tokens <= 0:
            raise ValueError(f"adapter.num_virtual_tokens must be positive (got {num_virtual_tokens})")
        self.layers = config.num_hidden_layers
        self.kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        width = self.layers * 2 * self.kv_heads * self.head_dim
        self.tokens = num_virtual_tokens
        if projection:
            self.embedding = nn.Embedding(num_virtual_tokens, config.hidden_size)
            self.transform = nn.Sequential(nn.Linear(config.hidden_size, hidden), nn.Tanh(), nn.Linear(hidden, width))
        else:
            self.embedding = nn.Embedding(num_virtual_tokens, width)
            self.transform = None

    def key_values(self, batch: int, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, a (batch, kv_heads, tokens, head_dim) key and value."""
        values = self.embedding.weight
        if self.transform is not None:
            values = self.transform(values)
        # Same layout as PEFT's: per token, layers × (key, value) × heads × head_dim.
        values = values.view(self.tokens, self.layers * 2, self.kv_heads, self.head_dim).permute(1, 2, 0, 3)
        values = values.to(dtype).unsqueeze(1).expand(-1, batch, -1, -1, -1)
        return [(values[2 * i], values[2 * i + 1]) for i in range(self.layers)]


def _inject(model: PreTrainedModel, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    encoder: PrefixEncoder = model.prefix_tuning
    inputs = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
    if inputs is None and args:
        inputs = args[0]
    batch, length = inputs.shape[:2]
    key = cache_argument(model)
    cache = kwargs.get(key)
    if cache is None:
        cache = kwargs[key] = DynamicCache(config=model.config)
    if cache.get_seq_length() == 0:
        dtype = model.get_input_embeddings().weight.dtype
        for layer, (k, v) in enumerate(encoder.key_values(batch, dtype)):
            cache.update(k, v, layer)
    cover_virtual_tokens(kwargs, cache.get_seq_length() + length, encoder.tokens)
    return args, kwargs


def attach(model: PreTrainedModel, cfg: Mapping) -> None:
    """Give ``model`` a trainable prefix (``model.prefix_tuning``) and the hook that feeds it to every layer."""
    model.add_module(
        "prefix_tuning",
        PrefixEncoder(
            model.config,
            int(cfg["num_virtual_tokens"]),
            bool(cfg["prefix_projection"]),
            int(cfg["projection_hidden"]),
        ).to(model.get_input_embeddings().weight.device),
    )
    model.register_forward_pre_hook(_inject, with_kwargs=True)


def count(cfg: Mapping, targets: Any, config: Any) -> int:
    """Per virtual token a key and a value at every layer, or, reparameterised, the embedding and the MLP."""
    tokens, hidden = int(cfg["num_virtual_tokens"]), config.hidden_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    width = config.num_hidden_layers * 2 * (getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    width *= head_dim
    if not cfg["prefix_projection"]:
        return tokens * width
    inner = int(cfg["projection_hidden"])
    return tokens * hidden + (hidden * inner + inner) + (inner * width + width)


register(
    AdapterSpec(
        "prefix",
        count=count,
        keys={"num_virtual_tokens": "count", "projection_hidden": "count"},
        attach=attach,
        sites=("attn.k", "attn.v"),
        presets={"attn": ("attn.k", "attn.v"), "best": ("attn.k", "attn.v")},  # keys and values at every attention
        size_key="num_virtual_tokens",
        virtual_tokens=True,
    )
)
