"""The site registry: where each named place of a transformer block lives in each model family.

A *site* is an architecture-independent name for a linear projection of a decoder block (``attn.q``, ``mlp.down``,
...). Adapters and placements speak only in sites; this table turns them into module names, so adding a model
family is one entry here and one model YAML. Families without a gated MLP simply lack ``mlp.gate``.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig

SITES = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")


@dataclass(frozen=True)
class Architecture:
    """How to reach the decoder blocks (``layers``, a dotted path from the model root) and, inside one block,
    the module that implements each site. Sites listed in ``fused`` share one projection (BLOOM's and GPT-NeoX's
    ``query_key_value``): a preset that names any of them adapts that whole projection once, as the paper's code
    did on BLOOM."""

    layers: str
    sites: dict[str, str]
    fused: frozenset[str] = frozenset()


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
)

ARCHITECTURES: dict[str, Architecture] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
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
    ),
}


def _fused_qkv(layers: str, attention: str, mlp: str) -> Architecture:
    return Architecture(
        layers=layers,
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


ARCHITECTURES["bloom"] = _fused_qkv("transformer.h", "self_attention", "mlp")
ARCHITECTURES["gpt_neox"] = _fused_qkv("gpt_neox.layers", "attention", "mlp")


def architecture_of(config: PretrainedConfig) -> Architecture:
    """The registry entry for a transformers model config, looked up by its ``model_type``."""
    model_type = config.model_type
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"model type '{model_type}' has no entry in the site registry (known: {', '.join(sorted(ARCHITECTURES))})"
        )
    return ARCHITECTURES[model_type]
