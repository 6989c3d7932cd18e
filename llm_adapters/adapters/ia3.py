"""(IA)³ (Liu et al., 2022): learned vectors that rescale activations, initialised to ones (an identity at step 0).

At the MLP's down projection the vector rescales the projection's input (the MLP's inner activation, the paper's
l_ff); at any other projection it rescales the output (l_k, l_v on keys and values), bias included, as PEFT does.
On a slice of a fused projection only those output rows are rescaled. Both forms fold exactly into the frozen
weight, so evaluation can merge them like LoRA.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from llm_adapters.adapters.registry import AdapterSpec, register
from llm_adapters.model.architectures import PROJECTION_SITES, features, frozen_projection, linear_weight, target_dims

FEEDFORWARD_SITES = frozenset({"mlp.down"})


class IA3Linear(nn.Module):
    """A frozen projection whose input (``feedforward``) or output (all of it, or ``rows``) is rescaled."""

    def __init__(self, base_layer: nn.Module, feedforward: bool, rows: torch.Tensor | None = None) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.feedforward = feedforward
        in_features, out_features = features(base_layer)
        device = linear_weight(base_layer).device
        self.register_buffer("rows", None if rows is None else rows.to(device), persistent=False)
        size = in_features if feedforward else out_features if rows is None else len(rows)
        self.ia3_scale = nn.Parameter(torch.ones(size, device=device))
        self.merged = False

    def merge(self) -> None:
        """Fold the vector into the frozen weight (and, for an output scale, the bias)."""
        if self.merged:
            return
        with torch.no_grad():
            weight = linear_weight(self.base_layer)
            scale = self.ia3_scale.to(weight.dtype)
            if self.feedforward:
                weight.mul_(scale.view(1, -1))
            else:
                rows = self.rows if self.rows is not None else torch.arange(len(scale), device=scale.device)
                weight[rows] = weight[rows] * scale.view(-1, 1)
                bias = frozen_projection(self.base_layer).bias
                if bias is not None:
                    bias[rows] = bias[rows] * scale
        self.merged = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        if self.feedforward:
            return self.base_layer((x.to(self.ia3_scale.dtype) * self.ia3_scale).to(x.dtype))
        out = self.base_layer(x)
        scale = self.ia3_scale.to(out.dtype)
        if self.rows is None:
            return out * scale
        return out.index_copy(-1, self.rows, out.index_select(-1, self.rows) * scale)


def wrap(base_layer: nn.Module, site: str, cfg: Mapping, rows: torch.Tensor | None = None) -> nn.Module:
    """(IA)³ on one projection: its input at the MLP's down projection, its output (or ``rows``) elsewhere."""
    return IA3Linear(base_layer, site in FEEDFORWARD_SITES, rows)


def count(cfg: Mapping, targets: Sequence[Any], config: Any) -> int:
    """One scale per input feature of the MLP's last projection, per output feature elsewhere."""
    dims = [target_dims(config, t.site, t.sliced) for t in targets]
    return sum(d_in if t.site in FEEDFORWARD_SITES else d_out for t, (d_in, d_out) in zip(targets, dims, strict=True))


register(
    AdapterSpec(
        "ia3",
        count=count,
        wrap=wrap,
        sites=PROJECTION_SITES,
        presets={  # the (IA)^3 paper's placement for both/best: keys, values and the MLP's inner activation
            "attn": ("attn.k", "attn.v"),
            "mlp": ("mlp.down",),
            "both": ("attn.k", "attn.v", "mlp.down"),
            "best": ("attn.k", "attn.v", "mlp.down"),
        },
        sliceable=True,
        mergeable=True,  # nothing to size: the vectors are as wide as what they rescale
    )
)
