"""Every config in conf/ composes and validates; bad values are rejected before any model is loaded."""

import pytest
import torch

from llm_adapters.job.config import ConfigError, validate
from tests.helpers.configs import CONF, make_config

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "base")  # base: what groups build on
OPTIONS = [(group, f.stem) for group in GROUPS for f in sorted((CONF / group).glob("*.yaml"))]


def test_groups_are_the_experiment_axes():
    assert set(GROUPS) >= {"model", "adapter", "placement", "dataset", "train", "eval", "logger"}


# Options that only make sense together with another choice.
# File datasets have no held-out split, so the default eval=synthetic has no meaning with them.
NEEDS = (
    {("eval", "math_mawps"): ["protocol=fixed"]}
    | {
        ("dataset", option): ["eval=math"]
        for group, option in OPTIONS
        if group == "dataset" and option != "synthetic_math"
    }
    | {("dataset", "hub"): ["eval=math", "dataset.hub=org/name"]}
)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes(group, option):
    added = group in ("sweep", "experiment", "budget")  # a study, preset or budget is added, not chosen among them
    cfg = make_config(f"{'+' if added else ''}{group}={option}", *NEEDS.get((group, option), []))
    assert added or cfg[group] is not None
    validate(cfg)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("adapter.kind=nope", "adapter.kind 'nope' is unknown"),
        ("train.micro_batch_size=3", "train.micro_batch_size 3 does not divide train.batch_size 16"),
        ("train.lr=0", r"train.lr must be a positive number \(got 0\)"),
        ("train.epochs=-1", r"train.epochs must be a positive number \(got -1\)"),
        ("adapter.r=0", r"adapter.r must be a positive integer \(got 0\)"),
        ("eval.datasets=[gsm9k]", r"eval.datasets: unknown evaluation set\(s\) \['gsm9k'\]"),
        ("eval=math_mawps", "eval.datasets has mawps, which the paper's evaluate.py cannot score"),
        ("dataset=math_10k", r"unknown evaluation set\(s\) \['synthetic_math'\]"),
        ("protocol.choice_extraction=last", "protocol.choice_extraction must be one of first_capital, option"),
        # Numbers that would silently change the meaning of a run, refused before anything loads.
        ("adapter.r=1.5", r"adapter.r must be an integer \(got 1.5\)"),
        ("adapter.r=true", r"adapter.r must be an integer \(got True\)"),
        ("train.epochs=0.5", r"train.epochs must be an integer \(got 0.5\)"),
        ("train.max_grad_norm=-1", r"train.max_grad_norm must be positive, or null to turn it off \(got -1\)"),
        ("train.save_every=-3", r"train.save_every must be positive, or null"),
        ("train.lr=nan", r"train.lr must be a finite number"),
        ("train.lr=inf", r"train.lr must be a finite number"),
        ("train.weight_decay=-5", r"train.weight_decay must not be negative"),
        ("eval.batch_size=0.5", r"eval.batch_size must be an integer"),
        ("dataset.test_size=0", r"dataset.test_size must be a positive number \(got 0\)"),
        ("adapter.dropout=1.5", r"adapter.dropout must be a probability in \[0, 1\)"),
        ("seed=-5", r"seed must be between 0 and 2\*\*32 - 1 \(got -5\)"),
        ("seed=99999999999", r"seed must be between 0 and 2\*\*32 - 1"),
        ("seed=abc", r"seed must be an integer \(got 'abc'\)"),
        (
            "+adapter.rank=8",
            r"adapter.rank: adapter 'lora' reads no such key \(did you mean r\?\); it reads kind, r, alpha",
        ),
        ("model.dtype=float8", r"model.dtype must be one of float32, bfloat16, float16 \(got 'float8'\)"),
        ("placement.layers=[]", r"placement.layers=\[\] names no layer: list layer indices, or null for every layer"),
        ("placement.sites=[]", r"placement.sites=\[\] names no site: list the sites, or null for the preset's"),
        ("device=foo", r"device=foo is not a torch device"),
        ("+eval.num_beam=1", r"eval.num_beam: no eval option reads such a key \(did you mean eval.num_beams\?\)"),
        ("+train.lrr=1", r"train.lrr: no train option reads such a key \(did you mean train.lr\?\)"),
        ("+foo=bar", r"foo: the config has no such key; nothing would read it"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_config(override))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_device_without_a_gpu_is_refused_before_loading():
    with pytest.raises(ConfigError, match=r"device=cuda but this machine has no CUDA GPU"):
        validate(make_config("device=cuda"))


def test_tiny_schedule_inherits_the_paper_setup():
    paper, tiny = make_config("train=paper").train, make_config().train
    assert (paper.batch_size, paper.micro_batch_size, paper.epochs, paper.lr, paper.warmup_steps) == (
        16,
        4,
        3,
        3e-4,
        100,
    )
    assert paper.cutoff_len == 256 and paper.train_on_inputs is True
    assert tiny.batch_size == 16 and tiny.cutoff_len == 256 and tiny.train_on_inputs is True


def test_quantized_loading_needs_pretrained_weights_and_its_backend():
    with pytest.raises(ConfigError, match=r"quantize pretrained weights: set model\.name_or_path"):
        validate(make_config("model.load_in_8bit=true"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="need the bitsandbytes package and a CUDA GPU"):
            validate(make_config("model=llama-7b", "model.load_in_4bit=true"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["adapter=series", "adapter.init=foo"], r"adapter.init must be one of bert, lora \(got 'foo'\)"),
        (["adapter=series", "adapter.bottleneck_size=-3"], r"adapter.bottleneck_size must be a positive integer"),
        (["adapter=prefix", "adapter.num_virtual_tokens=0"], r"adapter.num_virtual_tokens must be a positive integer"),
        (["adapter=lora", "adapter.alpha=0"], r"adapter.alpha must be a positive number \(got 0\)"),
        (["adapter=mam", "adapter.bottleneck_size=0"], r"adapter.bottleneck_size must be a positive integer"),
        (
            ["adapter=series", "adapter.non_linearity=foo"],
            "adapter.non_linearity 'foo' is not a transformers activation",
        ),
        (["adapter=prompt", "adapter.init=bert"], r"adapter.init must be one of random, vocab \(got 'bert'\)"),
        (["adapter=mam", "adapter.init=foo"], "adapter.init must be one of bert, lora"),  # its scaled parallel part's
        (["placement.layers=[1.5]"], r"placement.layers must be layer indices, integers \(got \[1.5\]\)"),
    ],
)
def test_fixed_choices_are_checked_before_anything_loads(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_config(*overrides))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["adapter.rank=8"], "no key adapter.rank in adapter=lora (did you mean adapter.r?)"),
        (["train.lrr=1"], "no key train.lrr in train=tiny (did you mean train.lr?)"),
        (["adapter=series", "adapter.foo=1"], "no key adapter.foo in adapter=series (it has bottleneck_size, "),
        (["-m", "adapter=series,lora", "adapter.bottleneck_siz=8"], "(did you mean adapter.bottleneck_size?)"),
        (["adapter.r=8", "model.dtype=float32", "+adapter.x=1", "placement.sites=[attn.q]"], None),
        (["+sweep=placement", "train.whatever=1"], None),  # a study may add keys: left to Hydra
    ],
)
def test_a_key_the_group_lacks_is_one_line_before_hydra_composes(arguments, message):
    found = run_script().unknown_key(arguments)
    assert found is None if message is None else message in found


def run_script():
    """run.py as a module (its checks run before Hydra, so they are plain functions)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_script", CONF.parent / "run.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_a_run_directory_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "taken").write_text("")
    check = run_script().unusable_directory
    assert check([f"hydra.run.dir={tmp_path / 'taken'}"]) == (
        f"hydra.run.dir={tmp_path / 'taken'}: {tmp_path / 'taken'} is a file, not a directory"
    )
    assert "is a file" in check([f"hydra.sweep.dir={tmp_path / 'taken' / 'below'}"])
    assert check([f"hydra.run.dir={tmp_path / 'new' / 'job'}"]) is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["adapter=series,lora"], "adapter=series,lora lists several values, a sweep: add -m"),
        (["+seed=1"], "+seed=1: seed is already in the config: write seed=1 (without +)"),
        (["+train.lr=1"], "+train.lr=1: train.lr is already in the config: write train.lr=1 (without +)"),
        (["placement.sites=[attn.q,attn.v]", "+per_adapter={lora:{train:{lr:0.03}}}", "++seed=3"], None),
        (["+grid_point=1", "eval.datasets=[boolq,piqa]", "model.name_or_path='a,b'"], None),
    ],
)
def test_override_mistakes_are_one_line_before_hydra_composes(arguments, message):
    found = run_script().misused_override(arguments)
    assert found is None if message is None else found.startswith(message)


def test_an_override_hydras_grammar_cannot_read_is_one_line():
    check = run_script().unparsable
    assert check(["-m", "adapter.r=int(interval(4"]) == (
        "adapter.r=int(interval(4: no viable alternative at input 'int(interval(4' (Hydra's override grammar)"
    )
    assert check(["adapter.r=glob(4,5)"]).startswith("adapter.r=glob(4,5): TypeError while evaluating 'glob(4,5)'")
    ok = ["-m", "hydra/sweeper=optuna_search", "adapter=choice(lora,series)", "train.lr=tag(log,interval(1e-5,1e-3))"]
    assert check([*ok, "++search.pruner={type:MedianPruner}", "hydra.sweeper.storage='sqlite:////tmp/x.db'"]) is None


def test_unusable_job_directories_are_one_line(tmp_path):
    check = run_script().unusable_directory
    assert check(["hydra.run.dir="]).startswith("hydra.run.dir is empty: name a directory")
    assert check(["hydra.run.dir=/proc/llm-adapters"]).endswith("cannot create it (No such file or directory)")
    assert check([f"hydra.run.dir={tmp_path / ('a' * 300)}"]).endswith("cannot create it (File name too long)")
    (tmp_path / "file").write_text("")
    assert check([f"hydra.sweep.dir={tmp_path / 'file' / 'x'}"]).endswith("is a file, not a directory")
    assert check([f"hydra.run.dir={tmp_path / 'new' / 'job'}"]) is None and (tmp_path / "new" / "job").is_dir()
