"""Adapters: the paper code's forward formulas, init behaviour, exact trainable counts, and LoRA against PEFT."""

import copy

import pytest
import torch
from torch import nn

from llm_adapters.adapters import adapter_state_dict, inject, spec, targets_for
from llm_adapters.adapters.bottleneck import ParallelLinear, SeriesLinear
from llm_adapters.adapters.lora import LoRALinear
from llm_adapters.model.loading import count_parameters
from tests.helpers.configs import make_config
from tests.helpers.models import TINY_CONFIGS, families, llama_site_dims, paper_count, tiny_model

LORA = {"kind": "lora", "r": 8, "alpha": 16, "dropout": 0.0}


def bottleneck(kind: str, init: str = "bert", size: int = 16, scaling: object = 1.0) -> dict:
    return {
        "kind": kind,
        "bottleneck_size": size,
        "non_linearity": "tanh",
        "scaling": scaling,
        "dropout": 0.0,
        "init": init,
    }


@pytest.mark.parametrize("placement", ["attn", "mlp", "both"])
@pytest.mark.parametrize("kind", ["lora", "series", "parallel"])
def test_only_adapters_train_and_counts_are_exact(kind, placement):
    cfg = make_config(f"placement={placement}")
    model = tiny_model("llama")
    base_total = sum(p.numel() for p in model.parameters())
    adapter = LORA if kind == "lora" else bottleneck(kind)
    inject(model, adapter, targets_for(model.config, {"kind": kind}, cfg.placement))
    size = adapter.get("r") or adapter["bottleneck_size"]
    c = TINY_CONFIGS["llama"]
    dims = llama_site_dims(c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"])
    expected = paper_count(kind, list(spec(kind).presets[placement]), size, dims, c["num_hidden_layers"])
    params = count_parameters(model)
    assert params["trainable"] == expected
    assert params["total"] == base_total + expected
    trainable = adapter_state_dict(model)
    assert sum(t.numel() for t in trainable.values()) == expected
    assert all(("lora_" in name) or (".adapter." in name) for name in trainable)


def test_lora_forward_formula_and_zero_start():
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    layer = LoRALinear(base, r=4, alpha=8, dropout=0.0)
    x = torch.randn(3, 12)
    assert torch.equal(layer(x), base(x))  # B starts at zero
    nn.init.normal_(layer.lora_B.weight)
    expected = base(x) + 2.0 * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    torch.testing.assert_close(layer(x), expected)


def test_series_and_parallel_formulas():
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    x = torch.randn(3, 12)

    def f(adapter, h):
        return 0.5 * torch.tanh(h @ adapter.adapter_down.weight.T) @ adapter.adapter_up.weight.T

    args = {"size": 4, "non_linearity": "tanh", "scaling": 0.5, "dropout": 0.0, "init": "bert"}
    inp = SeriesLinear(base, "input", **args)
    torch.testing.assert_close(inp(x), base(x + f(inp.adapter, x)))
    out = SeriesLinear(base, "output", **args)
    torch.testing.assert_close(out(x), base(x) + f(out.adapter, base(x)))
    par = ParallelLinear(base, **args)
    torch.testing.assert_close(par(x), base(x) + f(par.adapter, x))


@pytest.mark.parametrize("kind", ["series", "parallel"])
def test_bottleneck_init_lora_is_identity_and_bert_is_not(kind):
    cfg = make_config("placement=both")
    reference = tiny_model("llama")
    ids = torch.randint(0, 101, (2, 9))
    expected = reference(ids).logits
    for init, unchanged in (("lora", True), ("bert", False)):
        model = copy.deepcopy(reference)
        inject(model, bottleneck(kind, init), targets_for(model.config, {"kind": kind}, cfg.placement))
        assert torch.allclose(model(ids).logits, expected, atol=1e-6) is unchanged


def test_learned_scaling_is_a_trainable_scalar():
    model = tiny_model("llama")
    cfg = make_config("placement=mlp")
    inject(model, bottleneck("series", scaling="learned"), targets_for(model.config, {"kind": "series"}, cfg.placement))
    scales = [n for n in adapter_state_dict(model) if n.endswith("adapter_scale")]
    assert len(scales) == 3


def ours_and_peft(model_type: str, kind: str, rslora: bool = False):
    """Our LoRA or DoRA (r 8, alpha 16, placement both, B and magnitudes moved off their init) and PEFT's, holding
    the same weights, on the same tiny base model."""
    peft = pytest.importorskip("peft")
    cfg = make_config("placement=both")
    base = tiny_model(model_type)
    ours = copy.deepcopy(base)
    targets = targets_for(ours.config, {"kind": kind}, cfg.placement)
    inject(ours, {**LORA, "kind": kind, "rslora": rslora}, targets)
    names = [t.module_name for t in targets]  # full names: GPT-2 has two c_proj
    settings = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "use_dora": kind == "dora", "use_rslora": rslora}
    reference = peft.get_peft_model(base, peft.LoraConfig(target_modules=names, **settings)).eval()
    with torch.no_grad():
        for target in targets:
            mine = ours.get_submodule(target.module_name)
            theirs = reference.base_model.model.get_submodule(target.module_name)
            mine.lora_B.weight.normal_(std=0.1)  # non-zero B so the update matters
            theirs.lora_A["default"].weight.copy_(mine.lora_A.weight)
            theirs.lora_B["default"].weight.copy_(mine.lora_B.weight)
            if kind == "dora":
                mine.magnitude.mul_(1.5)
                theirs.lora_magnitude_vector["default"].weight.copy_(mine.magnitude)
    return ours.eval(), reference, targets


@pytest.mark.parametrize("model_type", families())
def test_lora_equals_peft_lora(model_type):
    ours, reference, _ = ours_and_peft(model_type, "lora")
    ids = torch.randint(0, 101, (2, 11))
    torch.testing.assert_close(ours(ids).logits, reference(ids).logits, atol=1e-5, rtol=0)
    assert count_parameters(ours)["trainable"] == sum(p.numel() for p in reference.parameters() if p.requires_grad)


@pytest.mark.parametrize("kind", ["lora", "dora"])
@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_rslora_scales_by_the_root_of_the_rank_as_peft_does(model_type, kind):
    ours, reference, targets = ours_and_peft(model_type, kind, rslora=True)
    ids = torch.randint(0, 101, (2, 11))
    torch.testing.assert_close(ours(ids).logits, reference(ids).logits, atol=1e-5, rtol=0)
    assert {ours.get_submodule(t.module_name).scaling for t in targets} == {16 / 8**0.5}
    plain, _, _ = ours_and_peft(model_type, kind)
    assert not torch.allclose(plain(ids).logits, ours(ids).logits, atol=1e-4)  # the scaling matters


@pytest.mark.parametrize("model_type", ["llama", "opt", "gpt2"])
def test_dora_equals_peft_dora_and_merges_exactly(model_type):
    from llm_adapters.adapters import merge_adapters

    ours, reference, targets = ours_and_peft(model_type, "dora")
    ids = torch.randint(0, 101, (2, 11))
    expected = reference(ids).logits
    torch.testing.assert_close(ours(ids).logits, expected, atol=1e-5, rtol=0)
    assert count_parameters(ours)["trainable"] == sum(p.numel() for p in reference.parameters() if p.requires_grad)
    assert merge_adapters(ours) == len(targets)
    torch.testing.assert_close(ours(ids).logits, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_lora_on_a_half_precision_base_rounds_once_as_the_fork_did(dtype):
    """The paper's fork added the fp32 LoRA update into the half-precision output in place: one rounding. Casting the
    update to half first and adding in half rounds twice, which differs in some elements."""
    torch.manual_seed(0)
    base = torch.nn.Linear(64, 48).to(dtype)
    layer = LoRALinear(base, r=4, alpha=8, dropout=0.0)
    torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(8, 64, dtype=dtype)
    with torch.no_grad():
        update = layer.lora_B(layer.lora_A(x.float())) * layer.scaling
        fork = base(x)
        fork += update  # in place: computed in float32, rounded once to the base's dtype
        ours, twice = layer(x), base(x) + update.to(dtype)
    assert ours.dtype == dtype and torch.equal(ours, fork)
    assert not torch.equal(ours, twice)
