"""LoRA (Hu et al., 2021) as the paper's code used it: y = W x + (alpha / r) · B A dropout(x).

A starts Kaiming-uniform (a = √5) and B at zero, so the wrapped layer is unchanged at step 0. The adapter weights
keep their own dtype (fp32 by default) and the input is cast to it, as PEFT does, so a half-precision base trains
an fp32 adapter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float, dropout: float) -> None:
        super().__init__()
        if r <= 0:
            raise ValueError(f"adapter.r must be positive (got {r})")
        self.base_layer = base_layer
        device = base_layer.weight.device
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False, device=device)
        self.lora_B = nn.Linear(r, base_layer.out_features, bias=False, device=device)
        self.lora_dropout = nn.Dropout(dropout)
        self.scaling = alpha / r
        self.merged = False
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def merge(self) -> None:
        """Fold the update into the frozen weight, W += (alpha / r) · B A, so evaluation costs what the base costs.
        Only for evaluation without dropout: a merged layer has no dropout to apply."""
        if not self.merged:
            with torch.no_grad():
                delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
                self.base_layer.weight += delta.to(self.base_layer.weight.dtype)
            self.merged = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        update = self.lora_B(self.lora_A(self.lora_dropout(x.to(self.lora_A.weight.dtype))))
        return self.base_layer(x) + (update * self.scaling).to(x.dtype)


def wrap(base_layer: nn.Linear, site: str, cfg: Mapping) -> nn.Module:
    """Wrap one targeted projection; LoRA behaves the same at every site."""
    return LoRALinear(base_layer, r=int(cfg["r"]), alpha=float(cfg["alpha"]), dropout=float(cfg["dropout"]))


class DoRALinear(LoRALinear):
    """DoRA (Liu et al., 2024): the adapted weight W + (alpha / r) B A split into a direction, renormalised per output
    row, and a trainable magnitude m (initialised to W's row norms): y = m · (W + s B A) x / ‖W + s B A‖ + b. As in
    the paper's section 4.3 (and PEFT), the norm is treated as a constant in the backward pass."""

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float, dropout: float) -> None:
        super().__init__(base_layer, r, alpha, dropout)
        with torch.no_grad():
            norm = torch.linalg.norm(base_layer.weight.float(), dim=1)
        self.magnitude = nn.Parameter(norm.to(self.lora_A.weight.dtype))

    def _scale(self) -> torch.Tensor:
        weight = self.base_layer.weight.to(self.lora_A.weight.dtype)
        adapted = weight + self.scaling * (self.lora_B.weight @ self.lora_A.weight).detach()
        return (self.magnitude / torch.linalg.norm(adapted, dim=1).detach()).view(1, -1)

    def merge(self) -> None:
        if not self.merged:
            with torch.no_grad():
                weight = self.base_layer.weight.to(self.lora_A.weight.dtype)
                adapted = weight + self.scaling * (self.lora_B.weight @ self.lora_A.weight)
                self.base_layer.weight.copy_((self._scale().view(-1, 1) * adapted).to(self.base_layer.weight.dtype))
            self.merged = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        dropped = self.lora_dropout(x.to(self.lora_A.weight.dtype))
        scale = self._scale()
        frozen = nn.functional.linear(dropped, self.base_layer.weight.to(dropped.dtype))
        update = (scale - 1) * frozen + scale * self.lora_B(self.lora_A(dropped)) * self.scaling
        return self.base_layer(x) + update.to(x.dtype)


def wrap_dora(base_layer: nn.Linear, site: str, cfg: Mapping) -> nn.Module:
    """Wrap one targeted projection with DoRA; it goes where LoRA goes."""
    return DoRALinear(base_layer, r=int(cfg["r"]), alpha=float(cfg["alpha"]), dropout=float(cfg["dropout"]))
