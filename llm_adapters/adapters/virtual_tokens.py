"""What prefix and prompt tuning share: positions in front of the input that generate knows nothing of.

Both put ``tokens`` extra positions before the real ones on a model's first forward pass and find them in the KV
cache on every later step. Whatever generate hands the model counts only the real tokens, so each pass widens the
attention mask to cover the virtual ones and moves the positions past them. Their encoders derive from
``VirtualTokens``, which is how the rest of the harness recognises a model that carries some (its cache is longer
than its prompt).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class VirtualTokens(nn.Module):
    """The trainable module of an adapter that adds ``tokens`` virtual positions in front of every input."""

    tokens: int


def carries_virtual_tokens(model: nn.Module) -> bool:
    """Whether any adapter on ``model`` puts virtual tokens in front of its input."""
    return any(isinstance(module, VirtualTokens) for module in model.modules())


def cover_virtual_tokens(kwargs: dict[str, Any], total: int, tokens: int) -> None:
    """Widen a 2D attention mask to ``total`` columns (virtual tokens in front are always attended) and move
    positions counted without the virtual tokens past them."""
    mask = kwargs.get("attention_mask")
    if mask is not None and mask.dim() == 2 and mask.shape[1] < total:
        ones = mask.new_ones(mask.shape[0], total - mask.shape[1])
        kwargs["attention_mask"] = torch.cat([ones, mask], dim=1)
    if kwargs.get("position_ids") is not None:
        kwargs["position_ids"] = kwargs["position_ids"] + tokens
