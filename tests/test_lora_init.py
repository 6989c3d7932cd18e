"""``adapter.init`` on our LoRA and DoRA: the same factors, residual base and logits as PEFT's ``init_lora_weights``
(gaussian, PiSSA, OLoRA); the layer computes at step 0 what the base did; a saved PiSSA/OLoRA adapter carries its
base's residual to a fresh base (ours and PEFT's format); the hash of a job at the default init is the hash of one
recorded before the key; a job with it trains, reloads and resumes."""

import copy

import peft
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from llm_adapters.adapters import adapter_state_dict, load_adapter_state, prepare, saving, targets_for
from llm_adapters.data.synthetic_math import generate
from llm_adapters.data.training_examples import tokenize_for_training
from llm_adapters.job import resume
from llm_adapters.job.config import ConfigError, validate
from tests.helpers.configs import FAST, build_model, make_config
from tests.helpers.models import tiny_model
from tests.helpers.peft_models import perturb

IDS = torch.randint(3, 100, (2, 9))
LORA = {"kind": "lora", "r": 4, "alpha": 8, "dropout": 0.0}


def ours_and_peft(family: str, init: str, kind: str = "lora", sites=None, layers=None):
    """Our LoRA/DoRA with ``init`` and PEFT's with the same ``init_lora_weights``, each on its own copy of a base
    (at ``placement=both`` unless ``sites``: BLOOM's fused q/k/v whole, as PEFT has it)."""
    base = tiny_model(family)
    adapter = {**LORA, "kind": kind, "init": init}
    placement = {"name": "both"} if sites is None else {"sites": list(sites), "layers": layers}
    targets = targets_for(base.config, adapter, placement)
    ours = copy.deepcopy(base)
    torch.manual_seed(0)
    prepare(ours, adapter, targets)
    settings = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "use_dora": kind == "dora"}
    init_lora_weights = True if init == "default" else init
    config = peft.LoraConfig(
        target_modules=[t.module_name for t in targets], init_lora_weights=init_lora_weights, **settings
    )
    torch.manual_seed(0)
    theirs = peft.get_peft_model(copy.deepcopy(base), config)
    return base, ours.eval(), theirs.eval(), targets


@pytest.mark.parametrize("kind", ["lora", "dora"])
@pytest.mark.parametrize("init", ["pissa", "olora"])
@pytest.mark.parametrize("family", ["llama", "opt", "bloom"])
def test_factors_residual_base_and_logits_are_pefts(family, init, kind):
    base, ours, theirs, targets = ours_and_peft(family, init, kind)
    torch.testing.assert_close(ours(input_ids=IDS).logits, base(input_ids=IDS).logits, atol=1e-5, rtol=0)  # step 0
    for target in targets:
        mine = ours.get_submodule(target.module_name)
        peft_layer = theirs.base_model.model.get_submodule(target.module_name)
        torch.testing.assert_close(mine.lora_A.weight, peft_layer.lora_A["default"].weight, atol=1e-6, rtol=0)
        torch.testing.assert_close(mine.lora_B.weight, peft_layer.lora_B["default"].weight, atol=1e-6, rtol=0)
        residual = peft_layer.base_layer.weight
        torch.testing.assert_close(mine.base_layer.weight, residual, atol=1e-6, rtol=0)
        original = base.get_submodule(target.module_name).weight
        assert not torch.allclose(residual, original, atol=1e-3)  # the principal part moved into B A
    perturb(ours)
    perturb(theirs)
    torch.testing.assert_close(ours(input_ids=IDS).logits, theirs(input_ids=IDS).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("init", ["pissa", "olora"])
@pytest.mark.parametrize(
    ("family", "sites"), [("gpt2", None), ("gptj", None), ("gpt_neox", None), ("bloom", ("attn.q", "attn.v"))]
)
def test_at_step_0_the_layer_computes_what_the_base_did_on_conv1d_and_on_fused_slices(family, sites, init):
    base = tiny_model(family)
    adapter = {**LORA, "init": init}
    model = copy.deepcopy(base)
    prepare(model, adapter, targets_for(base.config, adapter, {"sites": list(sites)} if sites else {"name": "both"}))
    moved = [m for m in model.modules() if hasattr(m, "lora_A0")]
    assert moved and all(not torch.equal(m.lora_B.weight, torch.zeros_like(m.lora_B.weight)) for m in moved)
    torch.testing.assert_close(model(input_ids=IDS).logits, base(input_ids=IDS).logits, atol=1e-5, rtol=0)


def test_gaussian_draws_pefts_a_from_the_same_seed():
    base, ours, theirs, targets = ours_and_peft("llama", "gaussian", sites=("attn.q",), layers=[0])
    mine = ours.get_submodule(targets[0].module_name)
    peft_layer = theirs.base_model.model.get_submodule(targets[0].module_name)
    assert torch.equal(mine.lora_A.weight, peft_layer.lora_A["default"].weight)
    assert torch.equal(mine.base_layer.weight, base.get_submodule(targets[0].module_name).weight)  # base untouched
    default = ours_and_peft("llama", "default", sites=("attn.q",), layers=[0])[1].get_submodule(targets[0].module_name)
    assert not torch.equal(default.lora_A.weight, mine.lora_A.weight)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_a_saved_adapter_brings_its_residual_base_to_a_fresh_base_in_both_formats(init, tmp_path):
    base, ours, _, targets = ours_and_peft("llama", init)
    perturb(ours)
    expected = ours(input_ids=IDS).logits
    adapter = {**LORA, "init": init}
    saving.save(ours, adapter, "tiny", targets, tmp_path)
    saved_config, saved_targets = saving.read_config(tmp_path, base.config)
    fresh = copy.deepcopy(base)
    prepare(fresh, saved_config, saved_targets)
    saving.load_weights(fresh, tmp_path)
    assert torch.equal(fresh.eval()(input_ids=IDS).logits, expected)  # the same machine: the same decomposition
    in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path / "peft")).eval()
    torch.testing.assert_close(in_peft(input_ids=IDS).logits, expected, atol=1e-5, rtol=0)


def test_loading_corrects_a_base_whose_own_decomposition_differs():
    """On another machine the decomposition of the fresh base can differ (signs, near-equal singular values): the
    saved factors, not the recomputed ones, decide the residual. Stood in for by a fresh OLoRA layer loaded with a
    PiSSA state."""
    base, pissa, _, targets = ours_and_peft("llama", "pissa")
    perturb(pissa)
    other = copy.deepcopy(base)
    prepare(other, {**LORA, "init": "olora"}, targets)
    assert load_adapter_state(other, adapter_state_dict(pissa)) is None
    torch.testing.assert_close(other.eval()(input_ids=IDS).logits, pissa(input_ids=IDS).logits, atol=1e-5, rtol=0)
    for target in targets:
        torch.testing.assert_close(
            other.get_submodule(target.module_name).base_layer.weight,
            pissa.get_submodule(target.module_name).base_layer.weight,
            atol=1e-6,
            rtol=0,
        )


def test_the_default_init_keeps_the_hash_of_jobs_recorded_before_the_key_and_others_change_it():
    resolved = OmegaConf.to_container(make_config("adapter=lora"), resolve=True)
    assert resolved["adapter"]["init"] == "default"
    before = copy.deepcopy(resolved)
    del before["adapter"]["init"]
    assert resume.config_hash(resolved) == resume.config_hash(before)
    resolved["adapter"]["init"] = "pissa"
    assert resume.config_hash(resolved) != resume.config_hash(before)
    bottleneck = OmegaConf.to_container(make_config("adapter=series"), resolve=True)
    without = copy.deepcopy(bottleneck)
    del without["adapter"]["init"]  # a bottleneck's own init key (bert/lora) is never left out
    assert resume.config_hash(bottleneck) != resume.config_hash(without)


def test_an_unknown_init_is_one_line_naming_the_choices():
    with pytest.raises(ConfigError, match=r"adapter\.init.*pissa"):
        validate(make_config("adapter=lora", "adapter.init=svd"))


@pytest.mark.parametrize("init", ["pissa", pytest.param("olora", marks=pytest.mark.slow)])
def test_a_job_trains_reloads_and_resumes(init, tmp_path):
    from llm_adapters.job.phases import set_seed
    from llm_adapters.job.recipe import run
    from llm_adapters.training import train

    trained = run(make_config(*FAST, "adapter=lora", f"adapter.init={init}"), tmp_path / "job")
    assert trained["status"] == "ok" and trained["config"]["adapter"]["init"] == init
    weights = load_file(str(tmp_path / "job" / "adapter" / saving.WEIGHTS))
    assert {n.rpartition(".")[2] for n in weights} == {"lora_A0", "lora_B0", "weight"}
    again = run(make_config(*FAST, "mode=eval", f"adapter_path={tmp_path / 'job' / 'adapter'}"), tmp_path / "eval")
    assert again["status"] == "ok" and again["eval"]["synthetic_math"]["n"] == 8

    def fitted(**kwargs):
        cfg = make_config(*FAST, f"adapter.init={init}", "train.max_steps=6", "train.save_every=3")
        set_seed(0)
        built = build_model(cfg)
        examples = tokenize_for_training(generate(32, 0, seed=0)[0], built.tokenizer, 64, False)
        cpu = torch.device("cpu")
        train(built.model, examples, cfg.train, built.tokenizer.pad_token_id, seed=0, device=cpu, **kwargs)
        return built

    whole = fitted(checkpoint_dir=tmp_path / "checkpoints")
    resumed = fitted(resume_from=tmp_path / "checkpoints" / "step-3")
    ours, theirs = adapter_state_dict(whole.model), adapter_state_dict(resumed.model)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[n], theirs[n]) for n in ours)
    saving.save(
        whole.model,
        OmegaConf.to_container(make_config(f"adapter.init={init}").adapter),
        "tiny",
        whole.targets,
        tmp_path / "saved",
    )
    reloaded = build_model(make_config(*FAST, "mode=eval", f"adapter_path={tmp_path / 'saved'}")).model.eval()
    assert torch.equal(reloaded(input_ids=IDS).logits, whole.model.eval()(input_ids=IDS).logits)


def test_dropout_on_a_pissa_layer_is_warned_once_since_training_then_leaves_the_bases_function(caplog):
    base = tiny_model("llama")
    outputs = {}
    for dropout in (0.0, 0.0123):
        adapter = {**LORA, "init": "pissa", "dropout": dropout}
        model = copy.deepcopy(base)
        with caplog.at_level("WARNING"):
            prepare(model, adapter, targets_for(base.config, adapter, {"name": "both"}))
        outputs[dropout] = model.train()(input_ids=IDS).logits  # dropout active
    warned = [r for r in caplog.records if "adapter.dropout=0.0123" in r.getMessage()]
    assert len(warned) == 1 and not any("adapter.dropout=0.0 " in r.getMessage() for r in caplog.records)
    expected = base(input_ids=IDS).logits
    torch.testing.assert_close(outputs[0.0], expected, atol=1e-5, rtol=0)
    assert not torch.allclose(outputs[0.0123], expected, atol=1e-3)
