"""Iso-parameter sizing: the solved size is the one whose exact count is closest to the target (checked against
every size), for our kinds and PEFT's; an unreachable budget is one line (a skipped job in a sweep); the solved size
is what the job runs and records."""

import pytest
from omegaconf import OmegaConf

from llm_adapters.adapters import budget, targets_for, trainable_count
from llm_adapters.errors import BudgetError
from llm_adapters.job.config import ConfigError
from llm_adapters.model.loading import load_tokenizer, model_config
from tests.helpers.configs import FAST, make_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_the_search_finds_the_closest_size_in_few_counts():
    asked = []

    def linear(size):
        asked.append(size)
        return 1000 + 37 * size

    assert budget.closest_size(linear, 1000 + 37 * 900 + 10, 4096) == (900, 1000 + 37 * 900)
    assert len(asked) <= 16  # 13 doublings, then interpolation lands on it
    even = budget.closest_size(lambda s: 10 * s if s % 2 == 0 else None, 95, 64)  # odd sizes refused
    assert even == (10, 100)  # 8 gives 80, 10 gives 100: the closer
    assert budget.closest_size(lambda s: None, 50, 64) is None
    # refused up to a threshold (AdaLoRA's init_r up to its target_r), and the first accepted power of two already
    # past the target: the sizes between the last refusal and it are halved into, not given up on
    above_five = budget.closest_size(lambda s: 100 * s if s > 5 else None, 640, 64)
    assert above_five == (6, 600)


def every_size(kind: str, overrides=(), sizes=range(1, 65)):
    """The count of each size the kind accepts on the tiny model, by brute force."""
    cfg = make_config(f"adapter={kind}", *overrides)
    config = model_config(cfg.model, load_tokenizer(cfg.model), offline=True)
    adapter = OmegaConf.to_container(cfg.adapter)
    targets = targets_for(config, adapter, cfg.placement)
    key, counts = budget.REGISTRY[kind].size_key, {}
    for size in sizes:
        try:
            counts[size] = trainable_count({**adapter, key: size}, targets, config)
        except ValueError:
            continue
    return key, counts


@pytest.mark.parametrize(
    ("kind", "target", "overrides"),
    [
        ("lora", 20_000, ()),
        ("series", 33_333, ()),
        ("hra", 9_000, ()),
        ("oft", 5_000, ()),
        ("adalora", 45_000, ("adapter.target_r=4",)),  # init_r 1 to 4 refused, 5 gives 32,100
    ],
)
def test_the_solved_size_is_the_closest_of_all(kind, target, overrides):
    key, counts = every_size(kind, overrides)
    solved = budget.apply(
        make_config(
            f"adapter={kind}", *overrides, "+budget=one_percent", f"budget.trainable={target}", "budget.fraction=null"
        )
    )
    best = min(counts, key=lambda s: (abs(counts[s] - target), s))
    assert solved.adapter[key] == best and solved.budget.target == target


def test_a_fraction_is_of_the_base_model():
    import torch
    from transformers import AutoModelForCausalLM

    cfg = make_config("adapter=lora", "+budget=one_percent", "budget.fraction=0.05")
    config = model_config(cfg.model, load_tokenizer(cfg.model), offline=True)
    with torch.device("meta"):
        base = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    assert budget.apply(cfg).budget.target == round(0.05 * base)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["adapter=ia3"], r"^budget: adapter 'ia3' has no size key to solve for a budget$"),
        (
            ["adapter=lora", "budget.fraction=0.9", "budget.max_size=4"],
            r"no adapter\.r of 'lora' gives [\d,]+ .* within 25% here \(adapter\.r 1 to 4 searched; the closest, "
            r"adapter\.r=4, gives 25,600\)$",
        ),
    ],
)
def test_a_budget_no_size_reaches_is_one_line(overrides, message):
    with pytest.raises(BudgetError, match=message):
        budget.apply(make_config("+budget=one_percent", *overrides))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("budget.trainable=1000", r"set exactly one of budget\.trainable .* and budget\.fraction"),
        ("budget.fraction=1.5", r"budget\.fraction must be in \(0, 1\) \(got 1\.5\)"),
        ("+budget.fractoin=0.1", r"budget\.fractoin: no such key"),
    ],
)
def test_bad_budget_keys_are_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        budget.apply(make_config("+budget=one_percent", override))


def test_a_job_runs_and_records_the_solved_size_and_a_sweep_skips_an_unreachable_one(tmp_path):
    from llm_adapters.job.recipe import run

    _, counts = every_size("lora")
    five = ["+budget=one_percent", "budget.fraction=0.05"]
    result = run(make_config(*FAST, "adapter=lora", *five), tmp_path / "job")
    assert result["status"] == "ok"
    solved = result["config"]["adapter"]["r"]
    assert result["params"]["trainable"] == counts[solved]  # the job trained the solved size
    assert result["config"]["budget"]["target"] == budget.apply(make_config(*five)).budget.target
    assert budget.apply(make_config("adapter=none", *five)).adapter == make_config("adapter=none").adapter  # a baseline
    skipped = run(make_config(*FAST, "adapter=ia3", *five), tmp_path / "ia3", sweep=True)
    assert skipped["status"] == "skipped" and "no size key" in skipped["reason"]
