"""Bottleneck adapters: the paper code's (its peft fork, tuners/bottleneck.py), and He et al.'s at sublayer level.

One bottleneck is h ↦ s · up(f(down(dropout(h)))) with no biases. The paper's code attached it to one projection in
three ways: series input side, y = W (x + adapter(x)) (its "mh_adapter", on the first MLP projections); series output
side, o = W x; y = o + adapter(o) (its "output_adapter": AdapterP after the MLP); parallel, y = W x + adapter(x)
(in_features → out_features). A series site's side is the code's: sites that read the sublayer's input (q/k/v,
gate/up) take the input side, those that write the residual stream (o, down) the output side. Init ``bert`` draws
both projections from N(0, 0.02) as the paper did (no identity at step 0); ``lora`` is Kaiming-uniform down and zero
up, an identity at first.

At sublayer sites (see ``architectures``) one bottleneck spans a whole sublayer, through hooks on its projections:
beside it (``attn``/``mlp``: He et al.'s scaled parallel adapter, sublayer(x) + s · adapter(x)), or in series at its
input (x + adapter(x) feeds every first projection once) or its output (Houlsby's placement, o + adapter(o)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers.activations import ACT2FN

from llm_adapters.adapters.registry import AdapterSpec, register
from llm_adapters.model.architectures import (
    BOUNDARY_SITES,
    PROJECTION_SITES,
    SUBLAYERS,
    Architecture,
    features,
    linear_weight,
    target_dims,
)

INITS = ("bert", "lora")
CHOICES = {"init": INITS, "non_linearity": tuple(ACT2FN)}
KEYS = {"bottleneck_size": "count", "dropout": "probability"}
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
            raise ValueError(f"adapter.init must be one of {', '.join(INITS)} (got '{init}')")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.adapter_up(self.act(self.adapter_down(self.dropout(h.to(self.adapter_down.weight.dtype)))))
        return (out * self.adapter_scale).to(h.dtype)


class SeriesLinear(nn.Module):
    """A frozen projection with a bottleneck before it (input side) or after it (output side)."""

    def __init__(self, base_layer: nn.Module, side: str, **bottleneck: object) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.side = side
        in_features, out_features = features(base_layer)
        dim = in_features if side == "input" else out_features
        self.adapter = Bottleneck(dim, dim, device=linear_weight(base_layer).device, **bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.side == "input":
            return self.base_layer(x + self.adapter(x))
        out = self.base_layer(x)
        return out + self.adapter(out)


class ParallelLinear(nn.Module):
    """A frozen projection with a bottleneck beside it, fed the same input, writing all outputs or ``rows`` only."""

    def __init__(self, base_layer: nn.Module, rows: torch.Tensor | None = None, **bottleneck: object) -> None:
        super().__init__()
        self.base_layer = base_layer
        device = linear_weight(base_layer).device
        in_features, out_features = features(base_layer)
        self.register_buffer("rows", None if rows is None else rows.to(device), persistent=False)
        self.adapter = Bottleneck(in_features, out_features if rows is None else len(rows), device=device, **bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.rows is None:
            return out + self.adapter(x)
        return out.index_add(-1, self.rows, self.adapter(x))


class SublayerAdapter(nn.Module):
    """One bottleneck spanning a sublayer of a block, wired in by hooks on the sublayer's projections.

    ``mode`` ``beside``: the first projections' input is kept and s · adapter(input) is added to the last projection's
    output; ``input``: every first projection reads x + adapter(x), computed once per forward; ``output``: the last
    projection's output o becomes o + adapter(o). Whatever a hook keeps is dropped when the sublayer's output is
    written, so nothing outlives a forward pass (and a recomputed forward under gradient checkpointing redoes it).
    """

    def __init__(self, dim: int, mode: str, device: torch.device, **bottleneck: object) -> None:
        super().__init__()
        self.mode = mode
        self.adapter = Bottleneck(dim, dim, device=device, **bottleneck)
        self._input: torch.Tensor | None = None
        self._transformed: torch.Tensor | None = None

    def read(self, module: nn.Module, args: tuple) -> tuple | None:
        """Forward pre-hook on each projection that reads the sublayer's input."""
        x = args[0]
        if self.mode == "beside":
            self._input = x
            return None
        if self._input is not x:
            self._input, self._transformed = x, x + self.adapter(x)
        return (self._transformed, *args[1:])

    def write(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on the projection that writes the sublayer's output."""
        if self.mode == "output":
            return output + self.adapter(output)
        kept, self._input, self._transformed = self._input, None, None
        if self.mode == "beside":
            return output + self.adapter(kept)
        return output

    def attach(self, block: nn.Module, arch: Architecture, sublayer: str) -> None:
        """Register the hooks on ``block``'s projections of ``sublayer`` (``attn`` or ``mlp``)."""
        if self.mode != "output":
            for name in arch.readers(sublayer):
                block.get_submodule(name).register_forward_pre_hook(self.read)
        block.get_submodule(arch.writer(sublayer)).register_forward_hook(self.write)


def _bottleneck_args(cfg: Mapping) -> dict[str, object]:
    scaling = cfg["scaling"] if cfg["scaling"] == "learned" else float(cfg["scaling"])
    named = {key: str(cfg[key]) for key in ("non_linearity", "init")}
    return {"size": int(cfg["bottleneck_size"]), "scaling": scaling, "dropout": float(cfg["dropout"]), **named}


def wrap_series(base_layer: nn.Module, site: str, cfg: Mapping, rows: torch.Tensor | None = None) -> nn.Module:
    """Series adapter on one projection, on the side the site implies."""
    if rows is not None:
        raise ValueError("a series adapter cannot adapt a slice of a fused projection")
    side = "input" if site in INPUT_SIDE_SITES else "output"
    return SeriesLinear(base_layer, side, **_bottleneck_args(cfg))


def wrap_parallel(base_layer: nn.Module, site: str, cfg: Mapping, rows: torch.Tensor | None = None) -> nn.Module:
    """Parallel adapter beside one projection (or beside its ``rows``)."""
    return ParallelLinear(base_layer, rows, **_bottleneck_args(cfg))


def attach_sublayer(block: nn.Module, arch: Architecture, site: str, cfg: Mapping) -> SublayerAdapter:
    """A bottleneck at a sublayer site of one block (``attn``/``mlp`` beside, ``*.input``/``*.output`` in series)."""
    sublayer, _, point = site.partition(".")
    writer = block.get_submodule(arch.writer(sublayer))
    dim = features(writer)[1]  # the hidden size: what a sublayer reads and writes
    adapter = SublayerAdapter(dim, point or "beside", linear_weight(writer).device, **_bottleneck_args(cfg))
    adapter.attach(block, arch, sublayer)
    return adapter


def count(cfg: Mapping, targets: Sequence[Any], config: Any) -> int:
    """Down and up per bottleneck, size × width each: the hidden size at a sublayer site; on a projection, its width
    on the adapted side (both sides for a parallel one beside it); a learned scale adds one."""
    size, total = int(cfg["bottleneck_size"]), 0
    for t in targets:
        d_in, d_out = target_dims(config, t.site, t.sliced) if t.site in PROJECTION_SITES else (config.hidden_size,) * 2
        width = d_in + d_out if cfg["kind"] == "parallel" else 2 * (d_in if t.site in INPUT_SIDE_SITES else d_out)
        total += size * width + (cfg["scaling"] == "learned")
    return total


# The paper code's placements. Series could not go on attention projections there: its "attention" series run put
# input-side adapters on the first MLP projections, which follow the attention sublayer. Its AdapterH default target
# map was gate, up (input side) and down (output side); series alone at the MLP is AdapterP.
_SERIES = {
    "sites": (*PROJECTION_SITES, *BOUNDARY_SITES),
    "size_key": "bottleneck_size",
    "sublayer": attach_sublayer,
    "choices": CHOICES,
    "keys": KEYS,
    "count": count,
}
_ADAPTERH = ("mlp.gate", "mlp.up", "mlp.down")
register(
    AdapterSpec(
        "series",
        wrap=wrap_series,
        presets={"attn": ("mlp.gate", "mlp.up"), "mlp": ("mlp.down",), "both": _ADAPTERH, "best": ("mlp.down",)},
        **_SERIES,
    )
)
register(
    AdapterSpec(
        "adapterh", wrap=wrap_series, presets={"mlp": _ADAPTERH, "both": _ADAPTERH, "best": _ADAPTERH}, **_SERIES
    )
)
register(
    AdapterSpec(
        "parallel",
        wrap=wrap_parallel,
        sites=PROJECTION_SITES,
        presets={
            "attn": ("attn.q", "attn.k", "attn.v"),
            "mlp": ("mlp.up", "mlp.down"),
            "both": ("attn.q", "attn.k", "attn.v", "mlp.up", "mlp.down"),
            "best": ("mlp.up", "mlp.down"),
        },
        sliceable=True,
        size_key="bottleneck_size",
        choices=CHOICES,
        keys=KEYS,
        count=count,
    )
)
# He et al. (2022): one bottleneck beside a whole sublayer; the MLP is where it pays most (their finding).
register(
    AdapterSpec(
        "scaled_parallel",
        sublayer=attach_sublayer,
        sites=tuple(SUBLAYERS),
        presets={"attn": ("attn",), "mlp": ("mlp",), "both": ("attn", "mlp"), "best": ("mlp",)},
        size_key="bottleneck_size",
        choices=CHOICES,
        keys=KEYS,
        count=count,
    )
)
