"""The adapter registry is the one source of what each kind is: its record agrees with the modules it builds and with
its YAML, and every list the harness uses is derived from it."""

import copy

import pytest
from omegaconf import OmegaConf

from llm_adapters.adapters import (
    REGISTRY,
    AdapterSpec,
    adapter_kinds,
    carries_virtual_tokens,
    known_kinds,
    merge_adapters,
    prepare,
    spec,
    targets_for,
)
from llm_adapters.adapters.peft_bridge import bridged_yaml
from llm_adapters.adapters.placement import PlacementError
from llm_adapters.adapters.registry import register
from llm_adapters.files import yaml_keys
from llm_adapters.job.axes import job_axes
from llm_adapters.job.config import validate
from tests.helpers.configs import CONF, make_config
from tests.helpers.models import tiny_model

SMALL = {"r": 4, "bottleneck_size": 8, "num_virtual_tokens": 3, "projection_hidden": 16}


def built(kind: str):
    """A tiny LLaMA with ``kind`` at its first preset placement (or none)."""
    record = spec(kind)
    placement = next(iter(record.presets), "best")
    cfg = make_config(f"adapter={kind}", f"placement={placement}")
    adapter = {key: SMALL.get(key, value) for key, value in OmegaConf.to_container(cfg.adapter).items()}
    model = copy.deepcopy(tiny_model("llama"))
    prepare(model, adapter, targets_for(model.config, adapter, cfg.placement))
    return model


@pytest.mark.parametrize("kind", known_kinds())
def test_every_kind_has_its_yaml_and_a_record_that_tells_the_truth(kind):
    record = spec(kind)
    yaml = OmegaConf.load(CONF / "adapter" / f"{kind}.yaml")
    assert yaml.kind == kind
    if record.size_key:
        assert record.size_key in yaml_keys(CONF / "adapter" / f"{kind}.yaml"), f"{kind}: no {record.size_key} key"
    model = built(kind)
    assert (merge_adapters(model) > 0) == record.mergeable
    assert carries_virtual_tokens(model) == record.virtual_tokens
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert trainable == {"nothing": 0, "all": total}.get(record.trains, trainable)
    assert (0 < trainable < total) == (record.trains == "adapter")


def test_every_yaml_is_a_registered_kind():
    assert sorted(p.stem for p in (CONF / "adapter").glob("*.yaml")) == sorted(known_kinds())


def test_the_lists_are_derived_from_the_records():
    assert set(adapter_kinds()) == {k for k, r in REGISTRY.items() if r.trains == "adapter"}
    assert set(known_kinds()) - set(adapter_kinds()) == {"none", "full"}
    assert {k for k, r in REGISTRY.items() if not r.placed} == {"none", "full", "prompt"}
    bridged = set(bridged_yaml())  # a conf/adapter/*.yaml with a peft block is a kind, with nothing else to write
    assert {"vera", "loha", "lokr", "adalora", "oft", "boft", "hra", "miss", "fourierft"} <= bridged
    assert {k for k, r in REGISTRY.items() if r.inject} == bridged
    assert {k for k, r in REGISTRY.items() if r.export} == {"lora", *bridged}
    assert spec("dora").presets == spec("lora").presets  # DoRA goes where LoRA goes, stated once


def test_a_kind_is_registered_once_and_unknown_kinds_name_the_known():
    with pytest.raises(RuntimeError, match="registered twice"):
        register(AdapterSpec("lora"))
    with pytest.raises(KeyError, match=r"unknown adapter\.kind 'nope'"):
        spec("nope")


def test_job_axes_follow_the_record():
    def axes(*overrides):
        return job_axes(OmegaConf.to_container(make_config(*overrides), resolve=True))

    assert axes("adapter=lora", "adapter.r=8", "placement=mlp")["size"] == 8
    assert axes("adapter=lora", "placement=mlp")["placement"] == "mlp"
    assert axes("adapter=prompt", "placement=mlp")["placement"] is None  # takes no placement, whatever the group
    assert axes("adapter=ia3")["size"] is None  # nothing to size
    loaded = {"kind": "series", "bottleneck_size": 64}
    assert job_axes(OmegaConf.to_container(make_config("adapter=lora"), resolve=True), loaded)["size"] == 64


def test_a_preset_a_kind_lacks_is_refused_before_anything_loads():
    with pytest.raises(PlacementError, match="placement 'attn' has no meaning for adapter 'adapterh'"):
        validate(make_config("adapter=adapterh", "placement=attn"))
