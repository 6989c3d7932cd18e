"""He et al. (2022)'s MAM adapter: prefix tuning at every attention plus a scaled parallel adapter beside the MLP,
composed on one model from the two registered kinds, each reading its own keys from the one adapter config. Its
placement says where the scaled parallel adapter goes; the prefix is at every attention whatever the placement."""

from __future__ import annotations

from llm_adapters.adapters.registry import AdapterSpec, register
from llm_adapters.model.architectures import SUBLAYERS

register(
    AdapterSpec(
        "mam",
        parts=("prefix", "scaled_parallel"),
        sites=tuple(SUBLAYERS),
        presets={"mlp": ("mlp",), "best": ("mlp",)},
        size_key="bottleneck_size",
        virtual_tokens=True,  # its prefix
    )
)
