"""LoRA (Hu et al., 2021) as the paper's code used it: y = W x + (alpha / r) · B A dropout(x); with
``adapter.rslora`` the rank-stabilised scaling alpha / √r (Kalajdzievski, 2023; PEFT's ``use_rslora``).

By default A starts Kaiming-uniform (a = √5) and B at zero, so the wrapped layer is unchanged at step 0;
``adapter.init`` chooses another start (``lora_init``: gaussian, PiSSA, OLoRA). The adapter weights keep their own
dtype (fp32 by default) and the input is cast to it, as PEFT does, so a half-precision base trains an fp32 adapter.
On a slice of a fused projection (``rows``) B writes only those output rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from llm_adapters.adapters import lora_peft
from llm_adapters.adapters.lora_init import FROM_THE_BASE, INITS, factors, warn_dropout
from llm_adapters.adapters.registry import AdapterSpec, register
from llm_adapters.model.architectures import PROJECTION_SITES, features, linear_weight, target_dims


class LoRALinear(nn.Module):
    """A frozen projection plus a trainable low-rank update of all its outputs, or of the output ``rows`` only."""

    def __init__(
        self,
        base_layer: nn.Module,
        r: int,
        alpha: float,
        dropout: float,
        rows: torch.Tensor | None = None,
        rslora: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__()
        if r <= 0:
            raise ValueError(f"adapter.r must be positive (got {r})")
        if init not in INITS:
            raise ValueError(f"adapter.init must be one of {', '.join(INITS)} (got {init})")
        self.base_layer = base_layer
        device = linear_weight(base_layer).device
        in_features, out_features = features(base_layer)
        self.register_buffer("rows", None if rows is None else rows.to(device), persistent=False)
        self.lora_A = nn.Linear(in_features, r, bias=False, device=device)
        self.lora_B = nn.Linear(r, out_features if rows is None else len(rows), bias=False, device=device)
        self.lora_dropout = nn.Dropout(dropout)
        self.scaling = alpha / math.sqrt(r) if rslora else alpha / r
        self.merged = False
        if init == "gaussian":  # in place of Kaiming, as PEFT: the same draws from the same seed
            nn.init.normal_(self.lora_A.weight, std=1 / r)
        else:
            nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        if init in FROM_THE_BASE:
            self._from_the_base(init, r)
            if dropout:
                warn_dropout(init, dropout)

    def _from_the_base(self, init: str, r: int) -> None:
        """A and B from a decomposition of the adapted rows of W (``lora_init.factors``), W the residual W − s·B A."""
        weight = self._frozen_rows()
        a, b = factors(weight, init, r, self.scaling)
        with torch.no_grad():
            self.lora_A.weight.copy_(a)
            self.lora_B.weight.copy_(b)
        self.register_buffer("lora_A0", a.clone())
        self.register_buffer("lora_B0", b.clone())
        if not weight.is_meta:
            self._set_frozen_rows(weight.float() - self.scaling * (b @ a))

    def restore_base(self, lora_A0: torch.Tensor, lora_B0: torch.Tensor) -> None:
        """Make the frozen rows the residual of the saved initial factors (a saved PiSSA/OLoRA adapter on a fresh
        base): W − s·B₀ A₀, reached from this layer's own residual by adding back the difference, which is exactly
        zero where the decomposition is the same (the same machine), and the saved factors then become its own."""
        with torch.no_grad():
            correction = self.lora_B0 @ self.lora_A0 - lora_B0.to(self.lora_B0) @ lora_A0.to(self.lora_A0)
            self._set_frozen_rows(self._frozen_rows().float() + self.scaling * correction)
            self.lora_A0.copy_(lora_A0)
            self.lora_B0.copy_(lora_B0)

    def _frozen_rows(self) -> torch.Tensor:
        """The frozen weight's rows this layer adapts (all of them, or a fused projection's slice)."""
        weight = linear_weight(self.base_layer)
        return weight if self.rows is None else weight[self.rows]

    def _set_frozen_rows(self, values: torch.Tensor) -> None:
        weight = linear_weight(self.base_layer)
        with torch.no_grad():
            if self.rows is None:
                weight.copy_(values)
            else:
                weight.index_copy_(0, self.rows, values.to(weight.dtype))

    def _add(self, out: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        """The frozen output plus the update, summed at the update's precision and rounded once to the output's, as
        the paper's fork added its fp32 update into a half-precision output in place (casting the update first
        would round twice)."""
        wide = out.to(update.dtype)  # exact: every half-precision value is a float32 one
        if self.rows is None:
            return (wide + update).to(out.dtype)
        return wide.index_add(-1, self.rows, update).to(out.dtype)

    def merge(self) -> None:
        """Fold the update into the frozen weight, W += (alpha / r) · B A, so evaluation costs what the base costs.
        Only for evaluation without dropout: a merged layer has no dropout to apply."""
        if not self.merged:
            with torch.no_grad():
                weight = linear_weight(self.base_layer)
                delta = (self.lora_B.weight @ self.lora_A.weight) * self.scaling
                self._add_rows(weight, delta.to(weight.dtype))
            self.merged = True

    def _add_rows(self, weight: torch.Tensor, delta: torch.Tensor) -> None:
        if self.rows is None:
            weight += delta
        else:
            weight.index_add_(0, self.rows, delta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        update = self.lora_B(self.lora_A(self.lora_dropout(x.to(self.lora_A.weight.dtype))))
        return self._add(self.base_layer(x), update * self.scaling)


def _sized(cfg: Mapping) -> tuple[int, float, float]:
    """r, alpha and dropout from an adapter config."""
    return int(cfg["r"]), float(cfg["alpha"]), float(cfg["dropout"])


def wrap(base_layer: nn.Module, site: str, cfg: Mapping, rows: torch.Tensor | None = None) -> nn.Module:
    """Wrap one targeted projection (or its ``rows``); LoRA behaves the same at every site."""
    return LoRALinear(base_layer, *_sized(cfg), rows, bool(cfg.get("rslora", False)), cfg.get("init", "default"))


class DoRALinear(LoRALinear):
    """DoRA (Liu et al., 2024): the adapted weight W + (alpha / r) B A split into a direction, renormalised per output
    row, and a trainable magnitude m (initialised to W's row norms): y = m · (W + s B A) x / ‖W + s B A‖ + b. As in
    the paper's section 4.3 (and PEFT), the norm is treated as a constant in the backward pass. On a slice of a fused
    projection (``rows``) only those rows are decomposed: DoRA works row by row. m starts at the row norms of the
    adapted weight W + s B A (W's own, unless ``adapter.init`` moved part of W into B A)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # LoRALinear's arguments
        super().__init__(*args, **kwargs)
        with torch.no_grad():
            adapted = self._frozen_rows().float() + self.scaling * (self.lora_B.weight @ self.lora_A.weight)
            norm = torch.linalg.norm(adapted, dim=1)
        self.magnitude = nn.Parameter(norm.to(self.lora_A.weight.dtype))

    def _scale(self) -> torch.Tensor:
        weight = self._frozen_rows().to(self.lora_A.weight.dtype)
        adapted = weight + self.scaling * (self.lora_B.weight @ self.lora_A.weight).detach()
        return (self.magnitude / torch.linalg.norm(adapted, dim=1).detach()).view(1, -1)

    def merge(self) -> None:
        if not self.merged:
            with torch.no_grad():
                adapted = self._frozen_rows().to(self.lora_A.weight.dtype)
                adapted = adapted + self.scaling * (self.lora_B.weight @ self.lora_A.weight)
                delta = self._scale().view(-1, 1) * adapted - self._frozen_rows()
                self._add_rows(linear_weight(self.base_layer), delta.to(linear_weight(self.base_layer).dtype))
            self.merged = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        dropped = self.lora_dropout(x.to(self.lora_A.weight.dtype))
        scale = self._scale()
        frozen = nn.functional.linear(dropped, self._frozen_rows().to(dropped.dtype))
        update = (scale - 1) * frozen + scale * self.lora_B(self.lora_A(dropped)) * self.scaling
        return self._add(self.base_layer(x), update)


def wrap_dora(base_layer: nn.Module, site: str, cfg: Mapping, rows: torch.Tensor | None = None) -> nn.Module:
    """Wrap one targeted projection (or its ``rows``) with DoRA; it goes where LoRA goes."""
    return DoRALinear(base_layer, *_sized(cfg), rows, bool(cfg.get("rslora", False)), cfg.get("init", "default"))


# The paper's LoRA placements: attention's q, k, v; the MLP's up and down; both for its tables.
PRESETS = {
    "attn": ("attn.q", "attn.k", "attn.v"),
    "mlp": ("mlp.up", "mlp.down"),
    "both": ("attn.q", "attn.k", "attn.v", "mlp.up", "mlp.down"),
    "best": ("attn.q", "attn.k", "attn.v", "mlp.up", "mlp.down"),
}


def count(cfg: Mapping, targets: Sequence[Any], config: Any) -> int:
    """A (r × in) and B (out × r) per target."""
    return sum(int(cfg["r"]) * sum(target_dims(config, t.site, t.sliced)) for t in targets)


def count_dora(cfg: Mapping, targets: Sequence[Any], config: Any) -> int:
    """LoRA's, plus a magnitude per output feature of each target."""
    return count(cfg, targets, config) + sum(target_dims(config, t.site, t.sliced)[1] for t in targets)


_LOW_RANK = {
    **{"sites": PROJECTION_SITES, "presets": PRESETS, "sliceable": True, "size_key": "r", "mergeable": True},
    "keys": {"r": "count", "alpha": "positive", "dropout": "probability"},
    "choices": {"rslora": (True, False), "init": INITS},
}
_PEFT = {"export": lora_peft.export, "peft_type": "LORA", "peft_read": lora_peft.read}
register(AdapterSpec("lora", wrap=wrap, count=count, **_PEFT, **_LOW_RANK))
register(AdapterSpec("dora", wrap=wrap_dora, count=count_dora, **_LOW_RANK))  # DoRA goes where LoRA goes
