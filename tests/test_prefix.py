"""Prefix tuning: same logits as PEFT's with the same prefix, and generation that agrees with its own forward pass."""

import copy

import peft
import pytest
import torch

from llm_adapters.adapters import prefix
from llm_adapters.data.synthetic_math import generate as synthetic
from llm_adapters.data.templates import evaluation_prompt
from llm_adapters.evaluation.generation import generate
from tests.helpers.configs import build_model, make_config
from tests.helpers.models import families, tiny_model

PREFIX = {"num_virtual_tokens": 5, "prefix_projection": False, "projection_hidden": 16}


def with_peft_reference(model_type: str):
    """Our prefix model and PEFT's, holding the same prefix values."""
    base = tiny_model(model_type)
    ours = copy.deepcopy(base).requires_grad_(False)
    prefix.attach(ours, PREFIX)
    reference = peft.get_peft_model(base, peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    (values,) = [p for p in reference.parameters() if p.requires_grad]
    with torch.no_grad():
        ours.prefix_tuning.embedding.weight.copy_(values)
    return ours.eval(), reference.eval()


@pytest.mark.parametrize("model_type", families())
def test_forward_equals_peft(model_type):
    ours, reference = with_peft_reference(model_type)
    ids = torch.randint(3, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    torch.testing.assert_close(
        ours(input_ids=ids, attention_mask=mask).logits,
        reference(input_ids=ids, attention_mask=mask).logits,
        atol=1e-5,
        rtol=0,
    )
    assert sum(p.numel() for p in ours.parameters() if p.requires_grad) == sum(
        p.numel() for p in reference.parameters() if p.requires_grad
    )


@pytest.mark.parametrize("model_type", ["llama", "gptj", "opt"])
def test_cached_generation_equals_greedy_decoding_over_the_peft_forward(model_type):
    """Generation with the KV cache must pick, step by step, the argmax of the full forward pass. (PEFT 0.21's own
    generate does not: with transformers 5 it disagrees with its own forward, so its forward is the reference.)"""
    ours, reference = with_peft_reference(model_type)
    ids = torch.randint(3, 100, (2, 7))
    mask = torch.ones_like(ids)
    generated = ours.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, num_beams=1, pad_token_id=0
    )
    sequence = ids
    with torch.no_grad():
        for _ in range(6):
            step = reference(input_ids=sequence, attention_mask=torch.ones_like(sequence)).logits[:, -1]
            sequence = torch.cat([sequence, step.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, sequence)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_batched_prefix_generation_equals_one_at_a_time(num_beams):
    model, tokenizer, *_ = build_model(make_config("adapter=prefix"))
    with torch.no_grad():
        model.prefix_tuning.embedding.weight.mul_(0.1)  # N(0, 1) keys saturate a tiny model; keep it varied
    prompts = [evaluation_prompt(r["instruction"]) for r in synthetic(8, 0, seed=3)[0]]
    cfg = {"num_beams": num_beams, "max_new_tokens": 8}
    one = generate(model.eval(), tokenizer, prompts, {**cfg, "batch_size": 1}, torch.device("cpu"))
    assert generate(model, tokenizer, prompts, {**cfg, "batch_size": 8}, torch.device("cpu")) == one


def test_reparameterised_prefix_counts_and_trains(tmp_path):
    from llm_adapters.job.recipe import run
    from tests.helpers.configs import FAST

    results = run(
        make_config(
            *FAST, "adapter=prefix", "adapter.prefix_projection=true", "adapter.projection_hidden=32", "train.lr=3e-2"
        ),
        tmp_path,
    )
    c = make_config().model.config
    width = c.num_hidden_layers * 2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    expected = 10 * c.hidden_size + (c.hidden_size * 32 + 32) + (32 * width + width)
    assert results["params"]["trainable"] == expected
    assert results["status"] == "ok"
