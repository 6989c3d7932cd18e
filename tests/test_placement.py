"""Placements resolve to exactly the modules the paper's code adapted (reference doc §3, §6.5)."""

import pytest

from llm_adapters.adapters import targets_for
from llm_adapters.adapters.placement import PlacementError
from llm_adapters.errors import ConfigError
from llm_adapters.model.architectures import architecture_of
from tests.helpers.configs import make_config
from tests.helpers.models import tiny_model


def modules(model, placement, kind):
    """The module names (inside one block) a placement targets in layer 0."""
    prefix = f"{architecture_of(model.config).layers}.0."
    return sorted(
        t.module_name.removeprefix(prefix) for t in targets_for(model.config, {"kind": kind}, placement) if t.layer == 0
    )


@pytest.mark.parametrize(
    ("placement", "kind", "expected"),
    [
        ("mlp", "series", ["mlp.down_proj"]),
        ("attn", "series", ["mlp.gate_proj", "mlp.up_proj"]),
        ("both", "series", ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj"]),
        ("mlp", "parallel", ["mlp.down_proj", "mlp.up_proj"]),
        ("attn", "parallel", ["self_attn.k_proj", "self_attn.q_proj", "self_attn.v_proj"]),
        ("mlp", "lora", ["mlp.down_proj", "mlp.up_proj"]),
        ("attn", "lora", ["self_attn.k_proj", "self_attn.q_proj", "self_attn.v_proj"]),
        ("both", "lora", ["mlp.down_proj", "mlp.up_proj", "self_attn.k_proj", "self_attn.q_proj", "self_attn.v_proj"]),
        ("best", "series", ["mlp.down_proj"]),
        ("best", "parallel", ["mlp.down_proj", "mlp.up_proj"]),
        ("best", "lora", ["mlp.down_proj", "mlp.up_proj", "self_attn.k_proj", "self_attn.q_proj", "self_attn.v_proj"]),
    ],
)
def test_llama_presets_match_the_paper_code(placement, kind, expected):
    cfg = make_config(f"placement={placement}")
    model = tiny_model("llama")
    assert modules(model, cfg.placement, kind) == expected
    assert {t.layer for t in targets_for(model.config, {"kind": kind}, cfg.placement)} == {0, 1, 2}


@pytest.mark.parametrize(
    ("model_type", "placement", "kind", "expected"),
    [
        ("gptj", "mlp", "series", ["mlp.fc_out"]),
        ("gptj", "attn", "series", ["mlp.fc_in"]),  # no gate: the first MLP projection only, as the code did
        ("gptj", "both", "lora", ["attn.k_proj", "attn.q_proj", "attn.v_proj", "mlp.fc_in", "mlp.fc_out"]),
        ("opt", "mlp", "series", ["fc2"]),
        ("opt", "mlp", "parallel", ["fc1", "fc2"]),
        ("mistral", "mlp", "parallel", ["mlp.down_proj", "mlp.up_proj"]),
        ("qwen2", "attn", "lora", ["self_attn.k_proj", "self_attn.q_proj", "self_attn.v_proj"]),
        # BLOOM and GPT-NeoX fuse q, k, v: the presets adapt the fused projection once, as the paper's code did
        ("bloom", "attn", "lora", ["self_attention.query_key_value"]),
        ("bloom", "both", "parallel", ["mlp.dense_4h_to_h", "mlp.dense_h_to_4h", "self_attention.query_key_value"]),
        ("bloom", "mlp", "series", ["mlp.dense_4h_to_h"]),
        ("gpt_neox", "attn", "parallel", ["attention.query_key_value"]),
        ("gpt_neox", "both", "series", ["mlp.dense_4h_to_h", "mlp.dense_h_to_4h"]),
        # GPT-2: Conv1D projections, q/k/v fused in c_attn
        ("gpt2", "attn", "lora", ["attn.c_attn"]),
        ("gpt2", "both", "parallel", ["attn.c_attn", "mlp.c_fc", "mlp.c_proj"]),
        ("gpt2", "mlp", "adapterh", ["mlp.c_fc", "mlp.c_proj"]),
        # Sublayer-level adapters become a module of the block; (IA)3 goes to keys, values and the MLP's inside
        ("llama", "both", "scaled_parallel", ["sublayer_adapters.attn", "sublayer_adapters.mlp"]),
        ("opt", "best", "mam", ["sublayer_adapters.mlp"]),
        ("llama", "best", "ia3", ["mlp.down_proj", "self_attn.k_proj", "self_attn.v_proj"]),
        ("llama", "mlp", "adapterh", ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj"]),
    ],
)
def test_other_families(model_type, placement, kind, expected):
    cfg = make_config(f"placement={placement}")
    assert modules(tiny_model(model_type), cfg.placement, kind) == expected


def test_explicit_sites_and_layers():
    cfg = make_config("placement.sites=[attn.o,mlp.gate]", "placement.layers=[1]")
    targets = targets_for(tiny_model("llama").config, {"kind": "parallel"}, cfg.placement)
    assert [t.module_name for t in targets] == ["model.layers.1.self_attn.o_proj", "model.layers.1.mlp.gate_proj"]


def test_prefix_goes_only_where_attention_is():

    config = tiny_model("llama").config
    prefix = {"kind": "prefix"}
    assert targets_for(config, prefix, make_config("placement=attn").placement) == []
    for name in ("mlp", "both"):
        with pytest.raises(PlacementError, match=f"placement '{name}' has no meaning for adapter 'prefix'"):
            targets_for(config, prefix, make_config(f"placement={name}").placement)
    with pytest.raises(PlacementError, match="acts on every layer"):
        targets_for(config, prefix, make_config("placement=attn", "placement.layers=[0]").placement)


def test_meaningless_or_missing_placements_are_clear_errors():

    model = tiny_model("llama")
    with pytest.raises(PlacementError, match="placement 'mlp' has no meaning for adapter 'prefix'"):
        targets_for(model.config, {"kind": "prefix"}, make_config("placement=mlp").placement)
    with pytest.raises(PlacementError, match=r"unknown site\(s\) \['attn.x'\]"):
        targets_for(model.config, {"kind": "lora"}, make_config("placement.sites=[attn.x]").placement)
    with pytest.raises(PlacementError, match=r"\['mlp.gate'\] do not exist in model type 'gptj'"):
        targets_for(tiny_model("gptj").config, {"kind": "lora"}, make_config("placement.sites=[mlp.gate]").placement)
    with pytest.raises(PlacementError, match=r"\['attn.q'\] are slices of one fused projection in model type 'bloom'"):
        targets_for(tiny_model("bloom").config, {"kind": "series"}, make_config("placement.sites=[attn.q]").placement)
    with pytest.raises(PlacementError, match=r"adapter 'lora' has no meaning at site\(s\) \['mlp'\]"):
        targets_for(model.config, {"kind": "lora"}, make_config("placement.sites=[mlp]").placement)
    with pytest.raises(PlacementError, match="adapter 'prompt' takes no placement"):
        targets_for(model.config, {"kind": "prompt"}, make_config("placement.sites=[mlp.up]").placement)
    with pytest.raises(ConfigError, match=r"placement.layers \[3\] out of range: the model has 3 layers"):
        targets_for(model.config, {"kind": "lora"}, make_config("placement.layers=[0,3]").placement)


def test_explicit_slices_of_a_fused_projection_get_one_target_each():
    cfg = make_config("placement.sites=[attn.q,attn.v]", "placement.layers=[1]")
    targets = targets_for(tiny_model("gpt2").config, {"kind": "lora"}, cfg.placement)
    assert [(t.site, t.module_name, t.sliced) for t in targets] == [
        ("attn.q", "transformer.h.1.attn.c_attn", True),
        ("attn.v", "transformer.h.1.attn.c_attn", True),
    ]


def test_slice_rows_follow_each_family_layout():
    from llm_adapters.model.architectures import architecture_of

    gpt2, bloom = tiny_model("gpt2").config, tiny_model("bloom").config  # hidden 64, 4 heads of 16
    assert architecture_of(gpt2).slice_rows("attn.k", gpt2).tolist() == list(range(64, 128))
    rows = architecture_of(bloom).slice_rows("attn.k", bloom).tolist()
    assert rows[:16] == list(range(16, 32)) and rows[16:32] == list(range(64, 80))  # head 0's k, then head 1's
