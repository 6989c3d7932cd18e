"""PEFT's tuners as kinds: our placement hands PEFT exactly the intended modules and nothing else trains (the same
parameters, buffers and logits as PEFT applied directly with the same config), the plan's counts are exact, the
PEFT-format copy loads in ``PeftModel.from_pretrained``, a whole job trains, saves, reloads and resumes, and bad
keys are one line before anything loads."""

import copy

import peft
import pytest
import torch
from omegaconf import OmegaConf
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

from llm_adapters.adapters import prepare, saving, targets_for, trainable_count
from llm_adapters.adapters.peft_bridge import bridged_yaml, peft_config
from llm_adapters.adapters.placement import PlacementError
from llm_adapters.data.synthetic_math import generate
from llm_adapters.data.training_examples import tokenize_for_training
from llm_adapters.job.config import ConfigError, validate
from llm_adapters.model.architectures import target_dims
from tests.helpers.configs import FAST, build_model, make_config
from tests.helpers.models import TINY_CONFIGS, tiny_model
from tests.helpers.peft_models import IDS, SMALL, adapter_of, perturb

BRIDGED = sorted(bridged_yaml())
CPU = torch.device("cpu")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # BOFT's note that it has no CUDA kernel here


def ours_and_peft(kind: str, arch: str, placement: str = "both"):
    """Our bridged kind and PEFT applied directly (get_peft_model) to copies of one base, the same config."""
    base = tiny_model(arch)
    adapter, placement_cfg = adapter_of(kind, placement)
    targets = targets_for(base.config, adapter, placement_cfg)
    ours = copy.deepcopy(base)
    torch.manual_seed(0)
    prepare(ours, adapter, targets)
    torch.manual_seed(0)
    theirs = peft.get_peft_model(copy.deepcopy(base), peft_config(adapter, targets, task_type="CAUSAL_LM"))
    return ours, theirs, targets


@pytest.mark.parametrize("arch", ["llama", "opt", "bloom"])
@pytest.mark.parametrize("kind", BRIDGED)
def test_the_same_modules_parameters_and_logits_as_peft_itself(kind, arch):
    ours, theirs, targets = ours_and_peft(kind, arch)
    prefix = "base_model.model."
    ours_trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    theirs_trainable = {n.removeprefix(prefix) for n, p in theirs.named_parameters() if p.requires_grad}
    assert ours_trainable == theirs_trainable and ours_trainable  # the same modules adapted, nothing else trains
    adapted = {n for n, m in ours.named_modules() if isinstance(m, BaseTunerLayer)}
    assert adapted == {t.module_name for t in targets}  # PEFT's layers where the placement says, nowhere else
    assert all(any(n.startswith(f"{module}.") for module in adapted) for n in ours_trainable)
    theirs_buffers = {n.removeprefix(prefix): b for n, b in theirs.named_buffers()}
    for name, buffer in ours.named_buffers():  # VeRA's shared projections, FourierFT's frequencies, BOFT's perms
        torch.testing.assert_close(buffer, theirs_buffers[name], atol=0, rtol=0)
    perturb(ours)
    perturb(theirs)
    expected = theirs.eval()(input_ids=IDS).logits
    assert not torch.allclose(expected, tiny_model(arch)(input_ids=IDS).logits, atol=1e-4)  # the adapters act
    torch.testing.assert_close(ours.eval()(input_ids=IDS).logits, expected, atol=1e-6, rtol=0)


def method_count(kind: str, adapter, targets, config) -> int | None:
    """The trainable count of the methods whose structure is one line (from each paper's definition)."""
    if kind == "ln_tuning":  # one trained copy of each norm: the tiny LLaMA's RMS norms have a scale, no bias
        return len(targets) * config.hidden_size
    dims = [target_dims(config, t.site, t.sliced) for t in targets]
    r = adapter.get("r")
    forms = {
        "vera": lambda i, o: o + r,  # the two scaling vectors, lambda_b and lambda_d
        "loha": lambda i, o: 2 * r * (i + o),  # two low-rank pairs
        "hra": lambda i, o: r * i,  # r Householder vectors
        "fourierft": lambda i, o: adapter["n_frequency"],  # the spectral coefficients
    }
    return sum(forms[kind](i, o) for i, o in dims) if kind in forms else None


@pytest.mark.parametrize("kind", BRIDGED)
def test_counts_from_the_config_alone_are_exact(kind):
    base = tiny_model("llama")
    for placement in ("attn", "mlp", "both"):
        adapter, placement_cfg = adapter_of(kind, placement)
        targets = targets_for(base.config, adapter, placement_cfg)
        built = copy.deepcopy(base)
        prepare(built, adapter, targets)
        real = sum(p.numel() for p in built.parameters() if p.requires_grad)
        assert trainable_count(adapter, targets, base.config) == real  # meta device, no weights
        if (form := method_count(kind, adapter, targets, base.config)) is not None:
            assert real == form, placement


@pytest.mark.parametrize("kind", BRIDGED)
def test_the_peft_format_copy_loads_in_peft(kind, tmp_path):
    ours, _, targets = ours_and_peft(kind, "llama")
    perturb(ours)
    adapter, _ = adapter_of(kind)
    saving.save(ours, adapter, "tiny", targets, tmp_path)
    loaded = peft.PeftModel.from_pretrained(tiny_model("llama"), str(tmp_path / "peft")).eval()
    torch.testing.assert_close(loaded(input_ids=IDS).logits, ours.eval()(input_ids=IDS).logits, atol=1e-6, rtol=0)


def test_placement_layers_and_explicit_sites_reach_peft():
    base = tiny_model("llama")
    cfg = make_config("adapter=vera", "placement.sites=[attn.o,mlp.gate]", "placement.layers=[1]")
    adapter = OmegaConf.to_container(cfg.adapter)
    model = copy.deepcopy(base)
    prepare(model, adapter, targets_for(base.config, adapter, cfg.placement))
    adapted = {n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)}
    assert adapted == {"model.layers.1.self_attn.o_proj", "model.layers.1.mlp.gate_proj"}


@pytest.mark.parametrize("family", sorted(TINY_CONFIGS))
def test_ln_tuning_trains_each_blocks_input_norms_in_every_family(family):
    base = tiny_model(family)
    adapter, placement = adapter_of("ln_tuning", "both")
    targets = targets_for(base.config, adapter, placement)
    norms = {n for n, m in base.named_modules() if "norm" in type(m).__name__.lower()} - {"model.norm"}
    assert {t.module_name for t in targets} <= norms and targets  # norm modules of the blocks, each once
    per_block = 1 if family == "gptj" else 2  # GPT-J's attention and MLP read one normed input
    assert len(targets) == per_block * base.config.num_hidden_layers
    model = copy.deepcopy(base)
    prepare(model, adapter, targets)
    trained = {n.rpartition(".ln_tuning_layers.")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {t.module_name for t in targets}  # PEFT's trained copies there and nowhere else


def test_norm_sites_are_ln_tunings_alone_and_ln_tuning_takes_no_projection():
    config = tiny_model("llama").config
    adapter, _ = adapter_of("ln_tuning")
    one = targets_for(config, adapter, {"sites": ["mlp.norm"], "layers": [1]})
    assert [t.module_name for t in one] == ["model.layers.1.post_attention_layernorm"]
    with pytest.raises(PlacementError, match=r"no meaning at site\(s\) \['attn.q'\]"):
        targets_for(config, adapter, {"sites": ["attn.q"]})
    with pytest.raises(PlacementError, match=r"no meaning at site\(s\) \['attn.norm'\]"):
        targets_for(config, adapter_of("vera")[0], {"sites": ["attn.norm"]})


PEFT_CONV1D = {"vera", "fourierft"}  # of these, PEFT 0.21's methods with a layer for GPT-2's Conv1D


@pytest.mark.parametrize("kind", ["vera", "loha", "lokr", "oft", "boft", "hra", "miss", "fourierft"])
def test_a_method_that_cannot_take_a_module_type_is_refused_from_the_config(kind):
    config = tiny_model("gpt2").config
    if kind in PEFT_CONV1D:
        assert targets_for(config, *adapter_of(kind))
        return
    with pytest.raises(PlacementError, match=rf"adapter '{kind}' \(PEFT's {kind.upper()}\) cannot go on .*Conv1D"):
        targets_for(config, *adapter_of(kind))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+adapter.rank=8", r"adapter\.rank: PEFT's LOHA config has no such key \(did you mean adapter\.r\?\)"),
        ("+adapter.target_modules=[q_proj]", r"adapter\.target_modules: PEFT's LOHA config has no such key"),
        ("adapter.r=0", r"adapter\.r must be a positive integer \(got 0\)"),
    ],
)
def test_bad_keys_are_one_line_before_anything_loads(override, message):
    cfg = make_config("adapter=loha", override)
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_values_peft_refuses_are_one_line_before_anything_loads():
    cfg = make_config("adapter=oft", "+adapter.r=4")  # OFT is sized by r or by its block size, not both
    with pytest.raises(ConfigError, match=r"adapter 'oft': PEFT's OFT config refuses it: You can only specify"):
        validate(cfg)


QUICK_JOBS = {("vera", "llama"), ("adalora", "bloom")}  # the rest in the slow suite


@pytest.mark.parametrize(
    ("kind", "family"),
    [
        pytest.param(kind, family, marks=() if (kind, family) in QUICK_JOBS else pytest.mark.slow)
        for kind in BRIDGED
        for family in ("llama", "bloom")
    ],
)
def test_a_bridged_job_trains_evaluates_saves_and_reloads(kind, family, tmp_path):
    from llm_adapters.job.recipe import run

    family_cfg = [f"model.config.model_type={family}", *(f"adapter.{k}={v}" for k, v in SMALL.items() if k == kind)]
    trained = run(make_config(*FAST, f"adapter={kind}", *family_cfg), tmp_path / "job")
    assert trained["status"] == "ok" and trained["params"]["trainable"] > 0 and trained["adapter"] == kind
    assert trained["eval"]["synthetic_math"]["n"] == 8  # evaluated
    weights = load_file(str(tmp_path / "job" / "adapter" / saving.WEIGHTS))
    initial = copy.deepcopy(build_model(make_config(*FAST, f"adapter={kind}", *family_cfg)).model)
    start = dict(initial.named_parameters())
    assert any(not torch.equal(value, start[name]) for name, value in weights.items())  # it trained
    reload = make_config(*FAST, "mode=eval", f"adapter_path={tmp_path / 'job' / 'adapter'}", *family_cfg)
    model, *_ = build_model(reload)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[name], value) for name, value in weights.items())
    again = run(reload, tmp_path / "eval")  # mode=eval on the saved adapter: the same answers
    assert again["eval"]["synthetic_math"]["accuracy"] == trained["eval"]["synthetic_math"]["accuracy"]
    answers = [(tmp_path / job / "predictions.jsonl").read_text() for job in ("job", "eval")]
    assert answers[0] == answers[1]  # every generated answer, word for word


@pytest.mark.parametrize("kind", [k if k == "vera" else pytest.param(k, marks=pytest.mark.slow) for k in BRIDGED])
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(kind, tmp_path):
    from llm_adapters.job.phases import set_seed
    from llm_adapters.training import train

    def fitted(**kwargs):
        cfg = make_config(*FAST, f"adapter={kind}", "train.max_steps=8", "train.save_every=4", "train.warmup_steps=0")
        set_seed(0)
        built = build_model(cfg)
        examples = tokenize_for_training(generate(32, 0, seed=0)[0], built.tokenizer, 64, False)
        train(built.model, examples, cfg.train, built.tokenizer.pad_token_id, seed=0, device=CPU, **kwargs)
        return {n: p.detach().clone() for n, p in built.model.named_parameters() if p.requires_grad}

    whole = fitted(checkpoint_dir=tmp_path / "checkpoints")
    assert (tmp_path / "checkpoints" / "step-4").is_dir()
    resumed = fitted(resume_from=tmp_path / "checkpoints" / "step-4")
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[n], whole[n]) for n in whole)


def test_in_a_sweep_a_family_the_method_cannot_take_is_skipped_and_alone_it_is_an_error(tmp_path):
    from llm_adapters.job.recipe import run

    gpt2 = [*FAST, "adapter=loha", "model.config.model_type=gpt2", "+model.config.n_inner=352"]
    result = run(make_config(*gpt2), tmp_path / "sweep", sweep=True)
    assert result["status"] == "skipped" and "Conv1D" in result["reason"]
    with pytest.raises(PlacementError, match="Conv1D"):
        run(make_config(*gpt2), tmp_path / "alone")


def test_a_size_peft_would_change_is_refused_before_any_weights_and_one_it_takes_is_what_is_built(
    tmp_path, monkeypatch
):
    """OFT's block size must divide every adapted projection's width; PEFT would silently use the nearest that
    does, so the job would record 7 over block-size-8 weights. Refused on the meta device, before the base loads."""
    from llm_adapters.job import phases
    from llm_adapters.job.recipe import run

    def no_weights(*args, **kwargs):
        raise AssertionError("the base model loaded")

    monkeypatch.setattr(phases, "load_model", no_weights)
    with pytest.raises(ConfigError, match=r"adapter.oft_block_size=7: PEFT's OFT would not build it as asked .*\(8\)"):
        run(make_config(*FAST, "adapter=oft", "adapter.oft_block_size=7"), tmp_path / "seven")
    monkeypatch.undo()
    results = run(make_config(*FAST, "adapter=oft", "adapter.oft_block_size=8"), tmp_path / "eight")
    model = build_model(make_config(*FAST, "adapter=oft", "adapter.oft_block_size=8")).model
    blocks = {m.oft_block_size["default"] for m in model.modules() if hasattr(m, "oft_block_size")}
    assert results["axes"]["size"] == 8 and blocks == {8}
