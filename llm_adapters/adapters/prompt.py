"""Prompt tuning (Lester et al., 2021): ``num_virtual_tokens`` trainable input embeddings in front of every input.

A forward pre-hook on the model turns the first pass's token ids into embeddings and puts the virtual tokens in
front (training, and the first step of generation): the attention mask gains ones for them, labels gain ignored
positions, and positions generate counted from the real tokens move past them. Later generation steps find the
virtual tokens in the KV cache, exactly as prefix tuning's. A forward hook drops their logits again, so the model's
output still lines up with its input ids; the loss, computed inside the model, already ignored them.

Init ``random`` is PEFT's default (N(0, 1) rows); ``vocab`` copies the embeddings of tokens drawn at random from the
vocabulary (Lester et al.'s sampled-vocabulary init), which starts the prompt at the scale of real embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from llm_adapters.adapters.registry import AdapterSpec, register
from llm_adapters.adapters.virtual_tokens import VirtualTokens, cover_virtual_tokens
from llm_adapters.data.training_examples import IGNORE_INDEX
from llm_adapters.model.architectures import cache_argument

INITS = ("random", "vocab")


class PromptEncoder(VirtualTokens):
    """The trainable prompt: one embedding row per virtual token."""

    def __init__(self, embeddings: nn.Embedding, num_virtual_tokens: int, init: str) -> None:
        super().__init__()
        if num_virtual_tokens <= 0:
            raise ValueError(f"adapter.num_virtual_tokens must be positive (got {num_virtual_tokens})")
        weight = embeddings.weight
        self.embedding = nn.Embedding(num_virtual_tokens, weight.shape[1], device=weight.device)
        if init == "vocab":
            ids = torch.randint(0, weight.shape[0], (num_virtual_tokens,))  # the job's seed fixes the draw
            with torch.no_grad():
                self.embedding.weight.copy_(weight[ids.to(weight.device)].float())
        elif init != "random":
            raise ValueError(f"adapter.init must be one of {', '.join(INITS)} (got '{init}')")
        self.tokens = num_virtual_tokens
        self.prepended = 0  # while a forward pass carries the virtual tokens in front: how many real tokens follow


def _prepend(model: PreTrainedModel, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    encoder: PromptEncoder = model.prompt_tuning
    if args:  # input ids given positionally
        kwargs["input_ids"], args = args[0], args[1:]
    ids, embeds = kwargs.get("input_ids"), kwargs.get("inputs_embeds")
    batch, length = (ids if ids is not None else embeds).shape[:2]
    cache = kwargs.get(cache_argument(model))
    past = cache.get_seq_length() if cache is not None else 0
    encoder.prepended = length if past == 0 else 0
    if not encoder.prepended:  # a later generation step: the virtual tokens are in the cache
        cover_virtual_tokens(kwargs, past + length, encoder.tokens)
        return args, kwargs
    if embeds is None:
        embeds = model.get_input_embeddings()(ids)
    prompt = encoder.embedding.weight.to(embeds.dtype).unsqueeze(0).expand(batch, -1, -1)
    kwargs["input_ids"], kwargs["inputs_embeds"] = None, torch.cat([prompt, embeds], dim=1)
    if kwargs.get("labels") is not None:
        labels = kwargs["labels"]
        kwargs["labels"] = torch.cat([labels.new_full((batch, encoder.tokens), IGNORE_INDEX), labels], dim=1)
    positions = kwargs.get("position_ids")
    if positions is not None:
        head = torch.arange(encoder.tokens, device=positions.device).expand(*positions.shape[:-1], -1)
        kwargs["position_ids"] = torch.cat([head, positions + encoder.tokens], dim=-1)
    mask = kwargs.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        kwargs["attention_mask"] = torch.cat([mask.new_ones(batch, encoder.tokens), mask], dim=1)
    return args, kwargs


def _strip(model: PreTrainedModel, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
    encoder: PromptEncoder = model.prompt_tuning
    if encoder.prepended and getattr(output, "logits", None) is not None:
        output.logits = output.logits[:, -encoder.prepended :]  # generate may have kept only the last few
    encoder.prepended = 0
    return output


def attach(model: PreTrainedModel, cfg: Mapping) -> None:
    """Give ``model`` a trainable prompt (``model.prompt_tuning``) and the hooks that put it in front of the input."""
    model.add_module(
        "prompt_tuning",
        PromptEncoder(model.get_input_embeddings(), int(cfg["num_virtual_tokens"]), str(cfg["init"])),
    )
    model.register_forward_pre_hook(_prepend, with_kwargs=True)
    model.register_forward_hook(_strip, with_kwargs=True)


# Acts on the input embeddings: no placement.
register(
    AdapterSpec(
        "prompt",
        attach=attach,
        count=lambda cfg, targets, config: int(cfg["num_virtual_tokens"]) * config.hidden_size,  # one row each
        keys={"num_virtual_tokens": "count"},
        placed=False,
        size_key="num_virtual_tokens",
        virtual_tokens=True,
        choices={"init": INITS},
    )
)
