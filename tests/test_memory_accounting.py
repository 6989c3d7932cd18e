"""The CPU memory accounting of benchmarks/memory.py: each part is what it claims to be."""

import copy

import torch

from benchmarks.memory import step_memory
from llm_adapters.adapters import prepare, targets_for
from tests.helpers.configs import make_config
from tests.helpers.models import tiny_model


def test_accounted_parts_of_a_training_step():
    base = tiny_model("llama")
    ids = torch.randint(3, 100, (2, 16))
    weight_bytes = sum(p.numel() for p in base.parameters()) * 4

    full = step_memory(copy.deepcopy(base).requires_grad_(True), ids)
    assert full["weights"] == weight_bytes
    assert full["gradients"] == weight_bytes  # one fp32 gradient per weight
    assert full["optimizer"] >= 2 * weight_bytes  # AdamW's two moments (and its step counters)

    cfg = make_config("adapter=lora", "placement=both")
    lora = copy.deepcopy(base)
    prepare(lora, dict(cfg.adapter), targets_for(lora.config, dict(cfg.adapter), cfg.placement))
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    parts = step_memory(lora, ids)
    assert parts["weights"] == weight_bytes + 4 * trainable
    assert parts["gradients"] == 4 * trainable  # frozen weights get none
    assert 2 * 4 * trainable <= parts["optimizer"] < 3 * 4 * trainable
    assert parts["activations"] > 0 and parts["peak"] == sum(v for k, v in parts.items() if k != "peak")
    assert parts["peak"] < full["peak"]
