"""Bottleneck adapters as the paper's code defined them (its peft fork, tuners/bottleneck.py).

One bottleneck is h ↦ s · up(f(down(dropout(h)))) with no biases. It is attached to a single linear projection in
one of three ways:

- series, input side  — y = W (x + adapter(x)): the code's "mh_adapter", used on the first MLP projections;
- series, output side — o = W x; y = o + adapter(o): the code's "output_adapter" (AdapterP after the MLP);
- parallel            — y = W x + adapter(x), the adapter mapping in_features → out_features.

For series, the side follows from the site exactly as the code's per-family map did: sites that read the
sublayer's input (q/k/v, MLP gate/up) take the input side, sites that write the residual stream (attention output,
MLP down) the output side. Init ``bert`` draws both projections from N(0, 0.02), as the paper did (so the adapter is
not an identity at step 0); ``lora`` is Kaiming-uniform down and zero up, which starts as an identity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn
from transformers.activations import ACT2FN

INPUT_SIDE_SITES = frozenset({"attn.q", "attn.k", "attn.v", "mlp.gate", "mlp.up"})


class Bottleneck(nn.Module):
    """down → non-linearity → up, scaled by a fixed float or a learned scalar (``scaling: learned``)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        size: int,
        non_linearity: str,
        scaling: float | str,
        dropout: float,
        init: str,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"adapter.bottleneck_size must be positive (got {size})")
        if non_linearity not in ACT2FN:
            raise ValueError(f"adapter.non_linearity '{non_linearity}' is not a transformers activation")
        self.adapter_down = nn.Linear(in_features, size, bias=False, device=device)
        self.adapter_up = nn.Linear(size, out_features, bias=False, device=device)
        self.act = ACT2FN[non_linearity]
        self.dropout = nn.Dropout(dropout)
        if scaling == "learned":
            self.adapter_scale = nn.Parameter(torch.ones(1, device=device))
        else:
            self.register_buffer("adapter_scale", torch.tensor(float(scaling), device=device), persistent=False)
        if init == "bert":
            nn.init.normal_(self.adapter_down.weight, std=0.02)
            nn.init.normal_(self.adapter_up.weight, std=0.02)
        elif init == "lora":
            nn.init.kaiming_uniform_(self.adapter_down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.adapter_up.weight)
        else:
            raise ValueError(f"adapter.init must be 'bert' or 'lora' (got '{init}')")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.adapter_up(self.act(self.adapter_down(self.dropout(h.to(self.adapter_down.weight.dtype)))))
        return (out * self.adapter_scale).to(h.dtype)


class SeriesLinear(nn.Module):
    """A frozen projection with a bottleneck before it (input side) or after it (output side)."""

    def __init__(self, base_layer: nn.Linear, side: str, **bottleneck: object) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.side = side
        dim = base_layer.in_features if side == "input" else base_layer.out_features
        self.adapter = Bottleneck(dim, dim, device=base_layer.weight.device, **bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.side == "input":
            return self.base_layer(x + self.adapter(x))
        out = self.base_layer(x)
        return out + self.adapter(out)


class ParallelLinear(nn.Module):
    """A frozen projection with a bottleneck beside it, fed the same input."""

    def __init__(self, base_layer: nn.Linear, **bottleneck: object) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = Bottleneck(
            base_layer.in_features, base_layer.out_features, device=base_layer.weight.device, **bottleneck
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.adapter(x)


def _bottleneck_args(cfg: Mapping) -> dict[str, object]:
    scaling = cfg["scaling"]
    return {
        "size": int(cfg["bottleneck_size"]),
        "non_linearity": str(cfg["non_linearity"]),
        "scaling": scaling if scaling == "learned" else float(scaling),
        "dropout": float(cfg["dropout"]),
        "init": str(cfg["init"]),
    }


def wrap_series(base_layer: nn.Linear, site: str, cfg: Mapping) -> nn.Module:
    """Series adapter on one projection, on the side the site implies."""
    side = "input" if site in INPUT_SIDE_SITES else "output"
    return SeriesLinear(base_layer, side, **_bottleneck_args(cfg))


def wrap_parallel(base_layer: nn.Linear, site: str, cfg: Mapping) -> nn.Module:
    """Parallel adapter beside one projection."""
    return ParallelLinear(base_layer, **_bottleneck_args(cfg))
