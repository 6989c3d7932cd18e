"""The site registry: where each named place of a transformer block lives in each model family.

A *site* is an architecture-independent name for a place in a decoder block. Two levels:

- projection sites (``attn.q`` ... ``mlp.down``): one linear projection (``nn.Linear``, or GPT-2's transposed
  ``Conv1D``), looked up in this table;
- sublayer sites: ``attn`` and ``mlp`` (the whole sublayer, for adapters beside it) and the sublayer boundaries
  ``attn.input``, ``attn.output``, ``mlp.input``, ``mlp.output`` (the hidden stream where it enters or leaves a
  sublayer, for adapters in series with it). They are derived from the projection sites: a sublayer's input is what
  its first projections read (q/k/v; gate/up), its output what its last projection writes (o; down) before any
  dropout and the residual add. That definition holds in every family, including OPT whose MLP has no module of its
  own and GPT-J whose attention and MLP read the same input;
- norm sites: ``attn.norm`` and ``mlp.norm``, the norm module that normalises each sublayer's input (for LN
  tuning, which trains the norms themselves). GPT-J's sublayers share one (``ln_1``); Gemma 3's MLP input norm is
  ``pre_feedforward_layernorm`` (its ``post_*`` norms act on sublayer outputs); OPT's are its
  ``self_attn_layer_norm`` and ``final_layer_norm`` wherever its config places them. A model's final norm, after
  the last block, is not a site of any block.

Adding a model family is one entry here and one model YAML. Families without a gated MLP simply lack ``mlp.gate``.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.pytorch_utils import Conv1D

PROJECTION_SITES = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")
SUBLAYERS = {"attn": (("attn.q", "attn.k", "attn.v"), "attn.o"), "mlp": (("mlp.gate", "mlp.up"), "mlp.down")}
BOUNDARY_SITES = ("attn.input", "attn.output", "mlp.input", "mlp.output")
SUBLAYER_SITES = (*SUBLAYERS, *BOUNDARY_SITES)
NORM_SITES = ("attn.norm", "mlp.norm")
SITES = (*PROJECTION_SITES, *SUBLAYER_SITES, *NORM_SITES)


@dataclass(frozen=True)
class Architecture:
    """How to reach the decoder blocks (``layers``, a dotted path from the model root) and, inside one block,
    the module that implements each projection site. Sites listed in ``fused`` share one projection (BLOOM's and
    GPT-NeoX's ``query_key_value``, GPT-2's ``c_attn``); ``fused_layout`` says how its output rows are laid out:
    ``per_head`` (q, k, v of head 0, then of head 1, ...) or ``contiguous`` (all q, then all k, then all v).
    ``norms``: the module of each norm site inside a block."""

    layers: str
    sites: dict[str, str]
    norms: dict[str, str]
    fused: frozenset[str] = frozenset()
    fused_layout: str = "per_head"

    def readers(self, sublayer: str) -> list[str]:
        """The distinct projections that read a sublayer's input, in site order."""
        names = [self.sites[s] for s in SUBLAYERS[sublayer][0] if s in self.sites]
        return list(dict.fromkeys(names))

    def writer(self, sublayer: str) -> str:
        """The projection that writes a sublayer's output."""
        return self.sites[SUBLAYERS[sublayer][1]]

    def slice_rows(self, site: str, config: PretrainedConfig) -> torch.Tensor:
        """The output rows of the fused projection that belong to ``site`` (``attn.q``, ``attn.k`` or ``attn.v``)."""
        part = ("attn.q", "attn.k", "attn.v").index(site)
        heads = config.num_attention_heads
        head_dim = config.hidden_size // heads
        rows = torch.arange(3 * heads * head_dim)
        if self.fused_layout == "contiguous":
            return rows.view(3, heads * head_dim)[part]
        return rows.view(heads, 3, head_dim)[:, part].reshape(-1)


_LLAMA = Architecture(
    layers="model.layers",
    sites={
        "attn.q": "self_attn.q_proj",
        "attn.k": "self_attn.k_proj",
        "attn.v": "self_attn.v_proj",
        "attn.o": "self_attn.o_proj",
        "mlp.gate": "mlp.gate_proj",
        "mlp.up": "mlp.up_proj",
        "mlp.down": "mlp.down_proj",
    },
    norms={"attn.norm": "input_layernorm", "mlp.norm": "post_attention_layernorm"},
)


def _fused_qkv(layers: str, attention: str, mlp: str) -> Architecture:
    return Architecture(
        layers=layers,
        norms={"attn.norm": "input_layernorm", "mlp.norm": "post_attention_layernorm"},
        sites={
            "attn.q": f"{attention}.query_key_value",
            "attn.k": f"{attention}.query_key_value",
            "attn.v": f"{attention}.query_key_value",
            "attn.o": f"{attention}.dense",
            "mlp.up": f"{mlp}.dense_h_to_4h",
            "mlp.down": f"{mlp}.dense_4h_to_h",
        },
        fused=frozenset({"attn.q", "attn.k", "attn.v"}),
    )


ARCHITECTURES: dict[str, Architecture] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    # Gemma 3 (text): LLaMA's module names. What differs is around them: RMS norms on each head's q and k after
    # their projections (an adapter on attn.q/attn.k changes what is normed, not the norm), a norm on each
    # sublayer's output before the residual add (so attn.output and mlp.output are o's and down's outputs before that
    # norm: a series adapter there is normed with the sublayer), and a 512-token sliding window on five of every six
    # layers (virtual tokens of prefix tuning at the start of the sequence are outside the window only for
    # sequences longer than 512 tokens).
    "gemma3_text": dataclasses.replace(
        _LLAMA, norms={"attn.norm": "input_layernorm", "mlp.norm": "pre_feedforward_layernorm"}
    ),
    "gptj": Architecture(
        layers="transformer.h",
        sites={
            "attn.q": "attn.q_proj",
            "attn.k": "attn.k_proj",
            "attn.v": "attn.v_proj",
            "attn.o": "attn.out_proj",
            "mlp.up": "mlp.fc_in",
            "mlp.down": "mlp.fc_out",
        },
        norms={"attn.norm": "ln_1", "mlp.norm": "ln_1"},  # attention and MLP read one normed input
    ),
    "opt": Architecture(
        layers="model.decoder.layers",
        sites={
            "attn.q": "self_attn.q_proj",
            "attn.k": "self_attn.k_proj",
            "attn.v": "self_attn.v_proj",
            "attn.o": "self_attn.out_proj",
            "mlp.up": "fc1",
            "mlp.down": "fc2",
        },
        norms={"attn.norm": "self_attn_layer_norm", "mlp.norm": "final_layer_norm"},
    ),
    "gpt2": Architecture(
        layers="transformer.h",
        sites={
            "attn.q": "attn.c_attn",
            "attn.k": "attn.c_attn",
            "attn.v": "attn.c_attn",
            "attn.o": "attn.c_proj",
            "mlp.up": "mlp.c_fc",
            "mlp.down": "mlp.c_proj",
        },
        norms={"attn.norm": "ln_1", "mlp.norm": "ln_2"},
        fused=frozenset({"attn.q", "attn.k", "attn.v"}),
        fused_layout="contiguous",
    ),
    "bloom": _fused_qkv("transformer.h", "self_attention", "mlp"),
    "gpt_neox": _fused_qkv("gpt_neox.layers", "attention", "mlp"),
}


def architecture_of(config: PretrainedConfig) -> Architecture:
    """The registry entry for a transformers model config, looked up by its ``model_type``."""
    model_type = config.model_type
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"model type '{model_type}' has no entry in the site registry (known: {', '.join(sorted(ARCHITECTURES))})"
        )
    return ARCHITECTURES[model_type]


def site_dims(config: PretrainedConfig) -> dict[str, tuple[int, int]]:
    """(in, out) features of each projection site of a block from the config's numbers alone (no weights): what
    closed-form parameter counts are computed from. A fused q/k/v site is its own slice's; ``target_dims`` gives a
    whole fused projection's."""
    hidden, heads = config.hidden_size, config.num_attention_heads
    inner = next((v for k in ("intermediate_size", "ffn_dim", "n_inner") if (v := getattr(config, k, None))), None)
    inner = inner or 4 * hidden
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv = head_dim * (getattr(config, "num_key_value_heads", None) or heads)
    return {
        "attn.q": (hidden, heads * head_dim),
        "attn.k": (hidden, kv),
        "attn.v": (hidden, kv),
        "attn.o": (heads * head_dim, hidden),
        "mlp.gate": (hidden, inner),
        "mlp.up": (hidden, inner),
        "mlp.down": (inner, hidden),
    }


def target_dims(config: PretrainedConfig, site: str, sliced: bool) -> tuple[int, int]:
    """(in, out) of the projection an adapter at ``site`` adapts: the whole fused q/k/v projection (3 × hidden
    outputs) unless the adapter takes only the site's slice of it."""
    d_in, d_out = site_dims(config)[site]
    if site in architecture_of(config).fused and not sliced:
        return d_in, 3 * config.hidden_size
    return d_in, d_out


Projection = nn.Linear | Conv1D


def features(layer: nn.Module) -> tuple[int, int]:
    """(in, out) features of a projection: an ``nn.Linear``, a ``Conv1D`` (weight stored transposed), or an adapter
    wrapper around one."""
    base = frozen_projection(layer)
    if isinstance(base, Conv1D):
        return base.weight.shape[0], base.nf
    return base.in_features, base.out_features


def frozen_projection(layer: nn.Module) -> Projection:
    """The projection at the bottom of any adapter wrappers (two adapters on slices of one fused projection nest)."""
    while hasattr(layer, "base_layer"):
        layer = layer.base_layer
    if not isinstance(layer, Projection):
        raise TypeError(f"a {type(layer).__name__} is not a linear projection")
    return layer


def linear_weight(layer: nn.Module) -> torch.Tensor:
    """The frozen weight as an (out, in) matrix, whatever the storage: a view, so in-place updates reach the layer."""
    base = frozen_projection(layer)
    return base.weight.T if isinstance(base, Conv1D) else base.weight


def cache_argument(model: nn.Module) -> str:
    """The name of the model's KV-cache argument (``cache`` in current transformers, ``past_key_values`` before):
    what generation, likelihood batches and the virtual-token adapters hand a cache through."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"
