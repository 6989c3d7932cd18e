"""LoRA+ (``train.loraplus_ratio``): the same parameters sped up as PEFT's ``create_loraplus_optimizer``, at ratio
times the learning rate through the whole schedule; off (null) it is the one group it always was, and the jobs
committed before the key existed keep their config hashes."""

import copy

import peft
import pytest
import torch
from omegaconf import OmegaConf

from llm_adapters.adapters import prepare, targets_for
from llm_adapters.job import resume
from llm_adapters.job.config import ConfigError, validate
from llm_adapters.training.optimization import Optimization
from tests.helpers.configs import make_config
from tests.helpers.models import tiny_model

TRAIN = {"lr": 1e-3, "weight_decay": 0.0, "warmup_steps": 2, "loraplus_ratio": 16}


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_the_faster_group_is_peft_s(kind):
    from peft.optimizers import create_loraplus_optimizer

    base = tiny_model("llama")
    cfg = make_config(f"adapter={kind}")
    adapter = OmegaConf.to_container(cfg.adapter)
    ours = copy.deepcopy(base)
    prepare(ours, adapter, targets_for(base.config, adapter, cfg.placement))
    opt = Optimization.build(ours, TRAIN, 10, 0, torch.device("cpu"))
    names = {id(p): n for n, p in ours.named_parameters()}
    slow_group, fast_group = opt.optimizer.param_groups
    assert fast_group["initial_lr"] == pytest.approx(16 * slow_group["initial_lr"])
    fast = {names[id(p)] for p in fast_group["params"]}
    config = peft.LoraConfig(
        r=adapter["r"], target_modules=["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"], use_dora=kind == "dora"
    )
    theirs = peft.get_peft_model(copy.deepcopy(base), config)
    optimizer = create_loraplus_optimizer(theirs, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16)
    their_names = {id(p): n for n, p in theirs.named_parameters()}
    faster = [g for g in optimizer.param_groups if g["lr"] == pytest.approx(16e-3)]
    their_fast = {their_names[id(p)] for group in faster for p in group["params"]}

    def site(name):  # where a tensor sits, and which of A, B or the magnitude it is, in either naming
        return (
            name.removeprefix("base_model.model.")
            .replace(".default", "")
            .replace("lora_magnitude_vector", "magnitude")
            .replace("magnitude.weight", "magnitude")
        )

    assert fast and {site(n) for n in fast} == {site(n) for n in their_fast}
    assert len(fast) < sum(p.requires_grad for p in ours.parameters())  # A is not sped up
    for _ in range(3):
        opt.scheduler.step()
    slow_lr, fast_lr = (group["lr"] for group in opt.optimizer.param_groups)
    assert fast_lr == pytest.approx(16 * slow_lr)  # the schedule keeps the ratio


def test_without_a_ratio_there_is_one_group_and_the_hash_is_unchanged():
    model = tiny_model("llama")
    cfg = make_config("adapter=lora")
    adapter = OmegaConf.to_container(cfg.adapter)
    prepare(model, adapter, targets_for(model.config, adapter, cfg.placement))
    assert (
        len(
            Optimization.build(
                model, {**TRAIN, "loraplus_ratio": None}, 10, 0, torch.device("cpu")
            ).optimizer.param_groups
        )
        == 1
    )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    before = copy.deepcopy(resolved)
    del before["train"]["loraplus_ratio"]  # a job recorded before the key existed
    assert resume.config_hash(resolved) == resume.config_hash(before)
    resolved["train"]["loraplus_ratio"] = 16
    assert resume.config_hash(resolved) != resume.config_hash(before)


def test_a_ratio_is_refused_where_it_has_no_meaning():
    with pytest.raises(ConfigError, match=r"train\.loraplus_ratio must be positive, or null to turn it off \(got 0\)"):
        validate(make_config("train.loraplus_ratio=0"))
    model = tiny_model("llama")
    cfg = make_config("adapter=series")
    adapter = OmegaConf.to_container(cfg.adapter)
    prepare(model, adapter, targets_for(model.config, adapter, cfg.placement))
    with pytest.raises(ConfigError, match=r"train\.loraplus_ratio 16: the adapter has no LoRA B matrices"):
        Optimization.build(model, TRAIN, 10, 0, torch.device("cpu"))
