"""mode=plan: exact trainable-parameter counts for the paper's real architectures, from their configs, no weights.

The expected numbers are the absolute counts of the LLM-Adapters README table (reference doc §2.4), which its code's
default target modules produce: LoRA r 8 on q and v (BLOOM: the fused query_key_value), AdapterH (series, both),
AdapterP (series, mlp), Parallel beside q, k, v (BLOOM: query_key_value), bottleneck 256.
"""

import json

import pytest

from llm_adapters.job.plan import plan
from tests.helpers.configs import FAST, make_config
from tests.helpers.processes import run_py

LORA_QV = ["adapter=lora", "adapter.r=8", "placement.sites=[attn.q,attn.v]"]
ADAPTER_H = ["adapter=series", "placement=both"]
ADAPTER_P = ["adapter=series", "placement=mlp"]
PARALLEL_QKV = ["adapter=parallel", "placement=attn"]
BLOOM_LORA = ["adapter=lora", "adapter.r=8", "placement=attn"]  # the fused query_key_value, whole

README = [
    ("llama-7b", LORA_QV, 4_194_304),
    ("llama-7b", ADAPTER_H, 201_326_592),
    ("llama-7b", ADAPTER_P, 67_108_864),
    ("llama-7b", PARALLEL_QKV, 201_326_592),
    ("llama-13b", LORA_QV, 6_553_600),
    ("llama-13b", ADAPTER_H, 314_572_800),
    ("llama-13b", ADAPTER_P, 104_857_600),
    ("llama-13b", PARALLEL_QKV, 314_572_800),
    ("gpt-j-6b", LORA_QV, 3_670_016),
    ("gpt-j-6b", ADAPTER_H, 117_440_512),
    ("gpt-j-6b", ADAPTER_P, 58_720_256),
    ("gpt-j-6b", PARALLEL_QKV, 176_160_768),
    ("bloomz-7b1", BLOOM_LORA, 3_932_160),
    ("bloomz-7b1", ADAPTER_H, 125_829_120),
    ("bloomz-7b1", ADAPTER_P, 62_914_560),
    ("bloomz-7b1", PARALLEL_QKV, 125_829_120),
]
# Base parameter counts of the released checkpoints.
BASE = {
    "llama-7b": 6_738_415_616,
    "llama-13b": 13_015_864_320,
    "gpt-j-6b": 6_050_882_784,
    "bloomz-7b1": 7_069_016_064,
    "gpt2-xl": 1_557_611_200,
    "pythia-6.9b": 6_857_302_016,
}

# The rest of the family on LLaMA-7B (hidden 4096, MLP 11008, 32 layers) and the other families, by closed form:
HIDDEN, INNER, LAYERS = 4096, 11008, 32
FAMILY = [
    # AdapterH under its own name: the README's 200M
    ("llama-7b", ["adapter=adapterh", "placement=best"], 201_326_592),
    # (IA)3 on k, v and the MLP's inner activation
    ("llama-7b", ["adapter=ia3", "placement=best"], (HIDDEN + HIDDEN + INNER) * LAYERS),
    # prompt tuning, 10 virtual tokens
    ("llama-7b", ["adapter=prompt"], 10 * HIDDEN),
    # scaled parallel beside each MLP, bottleneck 256
    ("llama-7b", ["adapter=scaled_parallel", "placement=mlp"], 2 * HIDDEN * 256 * LAYERS),
    # MAM: 30 prefix tokens through a 512-wide MLP to 32 layers' keys and values, plus scaled parallel 512 at the MLP
    (
        "llama-7b",
        ["adapter=mam", "placement=best"],
        30 * HIDDEN + (HIDDEN * 512 + 512) + (512 + 1) * (LAYERS * 2 * HIDDEN) + 2 * HIDDEN * 512 * LAYERS,
    ),
    # BLOOM with LoRA on the q and v slices of its fused projection: as many as the README's BLOOM LoRA count
    ("bloomz-7b1", ["adapter=lora", "adapter.r=8", "placement.sites=[attn.q,attn.v]"], 3_932_160),
    # GPT-2 XL (Conv1D): LoRA r 8 on the whole fused c_attn (1600 -> 4800), 48 layers
    ("gpt2-xl", BLOOM_LORA, 8 * (1600 + 4800) * 48),
    # Pythia-6.9B (GPT-NeoX): AdapterH on its two MLP projections, 4096 and 16384 wide
    ("pythia-6.9b", ["adapter=adapterh", "placement=best"], (2 * 4096 * 256 + 2 * 4096 * 256) * 32),
]


@pytest.mark.parametrize(("model", "overrides", "trainable"), README, ids=[f"{m}-{o[0]}-{t}" for m, o, t in README])
def test_counts_match_the_paper_code(tmp_path, model, overrides, trainable):
    result = plan(make_config("mode=plan", f"model={model}", *overrides), tmp_path)
    assert result["params"]["trainable"] == trainable
    assert result["params"]["total"] == BASE[model] + trainable
    assert json.loads((tmp_path / "plan.json").read_text())["params"] == result["params"]


@pytest.mark.parametrize(("model", "overrides", "trainable"), FAMILY, ids=[f"{m}-{o[0]}" for m, o, _ in FAMILY])
def test_family_counts_match_their_closed_form(tmp_path, model, overrides, trainable):
    result = plan(make_config("mode=plan", f"model={model}", *overrides), tmp_path)
    assert result["params"]["trainable"] == trainable
    assert result["params"]["total"] == BASE[model] + trainable


def test_prefix_count_matches_the_reference(tmp_path):
    """Reference doc §6.3: vt · layers · 2 · hidden, 2,621,440 for LLaMA-7B with 10 virtual tokens."""
    assert (
        plan(make_config("mode=plan", "model=llama-7b", "adapter=prefix"), tmp_path)["params"]["trainable"] == 2_621_440
    )


def test_paper_camera_ready_lora_and_memory_estimate(tmp_path):
    """LoRA r 32 on q, k, v, up, down (the tables' setting) on LLaMA-7B, with the paper's schedule."""
    result = plan(make_config("mode=plan", "model=llama-7b", "train=paper"), tmp_path)
    assert result["params"]["trainable"] == 32 * (3 * (4096 + 4096) + 2 * (4096 + 11008)) * 32
    memory = result["memory_gb"]
    assert memory["weights"] == pytest.approx(BASE["llama-7b"] * 2 / 2**30, rel=1e-9)  # fp16 base
    assert 12 < memory["total"] < 24
    checkpointed = plan(
        make_config("mode=plan", "model=llama-7b", "train=paper", "train.gradient_checkpointing=true"), tmp_path
    )
    assert checkpointed["memory_gb"]["activations"] < memory["activations"] / 10


def test_plan_counts_equal_a_real_jobs(tmp_path):
    from llm_adapters.job.recipe import run

    for adapter in ("lora", "series", "parallel"):
        planned = plan(make_config("mode=plan", f"adapter={adapter}"), tmp_path / f"plan-{adapter}")
        trained = run(make_config(*FAST, f"adapter={adapter}"), tmp_path / f"run-{adapter}")
        assert planned["params"] == trained["params"]


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_plan_sweep_prints_one_table(tmp_path):
    proc = run_py("-m", "mode=plan", "model=llama-7b,gpt-j-6b", "adapter=lora,series", f"hydra.sweep.dir={tmp_path}")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    table = out[out.index("model adapter") :].splitlines()
    assert (
        len(table) == 6
        and table[1].split()[:2] == ["llama-7b", "lora"]
        and table[4].split()[:2] == ["gpt-j-6b", "series"]
    )
    # The study's power under its table: 4 cells, one seed, the synthetic held-out split's 100 questions.
    assert table[5].startswith("power: 4 cells x 1 seed(s), 6 pairs x 1 rows = 6 tests, questions synthetic_math 100:")


def test_the_table_sweep_follows_each_rows_command(tmp_path):
    """sweeps/math_table.yaml's per_run: the 8-bit base and the validation split where the paper's command for that
    model and adapter used them, and nowhere else; plan mode shows it."""
    from llm_adapters.job.config import ConfigError
    from llm_adapters.job.plan import line

    def planned(model, adapter):
        cfg = make_config("+sweep=math_table", f"model={model}", f"adapter={adapter}", "mode=plan")
        return plan(cfg, tmp_path / f"{model}-{adapter}")

    bloom_lora, llama_lora = planned("bloomz-7b1", "lora"), planned("llama-7b", "lora")
    assert bloom_lora["config"]["model"]["load_in_8bit"] and "(8-bit base)" in line(bloom_lora)
    assert not llama_lora["config"]["model"]["load_in_8bit"] and "8-bit" not in line(llama_lora)
    assert bloom_lora["memory_gb"]["weights"] < planned("bloomz-7b1", "series")["memory_gb"]["weights"] / 1.9
    series = planned("llama-7b", "series")["config"]["train"]
    assert (series["val_set_size"], series["eval_every"], series["keep"]) == (120, 80, "best")
    assert llama_lora["config"]["train"]["val_set_size"] == 0
    with pytest.raises(ConfigError, match=r"per_run\.llama7b/lora: not a <model>/<adapter kind>"):
        plan(make_config("mode=plan", "+per_run={llama7b/lora:{seed:1}}"), tmp_path / "typo")
