"""Every adapter × every preset placement × every architecture family: it builds (or is refused with a clear error
where the combination has no meaning), only adapter parameters train, one optimizer step changes only them, the
trainable count equals the closed form the kind's record computes from the config's numbers (so a new kind brings
its own), and save → load reproduces the logits."""

import copy
import re
from functools import cache

import pytest
import torch
from omegaconf import OmegaConf

from llm_adapters.adapters import adapter_kinds, prepare, saving, spec, targets_for, trainable_count
from llm_adapters.adapters.placement import PlacementError
from llm_adapters.model.architectures import ARCHITECTURES
from tests.helpers.configs import make_config
from tests.helpers.models import TINY_CONFIGS, families, tiny_model

FAMILIES = families()  # every family in the site registry: a new one is in the matrix without a line here
PLACEMENTS = ("attn", "mlp", "both", "best")
KINDS = adapter_kinds()  # every registered kind, so a new one is in the matrix without a line here
SMALL = {
    **{"r": 4, "bottleneck_size": 8, "num_virtual_tokens": 3, "projection_hidden": 16},
    **{"n_frequency": 100, "init_r": 4, "target_r": 2},
}


def test_every_family_has_a_tiny_model_to_test_on():
    assert sorted(TINY_CONFIGS) == sorted(ARCHITECTURES)


def expected_count(kind: str, adapter: dict, targets, config, base_total: int) -> int:
    """What the kind's record says it trains (its closed form from the config's numbers), or a baseline's."""
    trains = spec(kind).trains
    return (
        trainable_count(adapter, targets, config) if trains == "adapter" else {"all": base_total, "nothing": 0}[trains]
    )


def peft_frozen_state(model) -> int:
    """The elements of PEFT layers' frozen parameters (``other_param_names``), which are not the base model's."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    dicts = [getattr(layer, name, None) for layer in layers for name in layer.other_param_names]
    return sum(p.numel() for d in dicts if isinstance(d, torch.nn.ParameterDict) for p in d.parameters())


@cache
def composed(kind: str, placement: str):
    """The job config for a kind and preset (composed once for all architectures)."""
    return make_config(f"adapter={kind}", f"placement={placement}")


def logits(model, ids, mask):
    with torch.no_grad():
        return model.eval()(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("kind", [*KINDS, "none", "full"])
def test_adapter_at_every_preset(kind, arch, tmp_path):
    base = tiny_model(arch)
    base_total = sum(p.numel() for p in base.parameters())
    ids = torch.randint(3, 100, (2, 8))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    for placement in PLACEMENTS:
        cfg = composed(kind, placement)
        adapter = {key: SMALL.get(key, value) for key, value in OmegaConf.to_container(cfg.adapter).items()}
        if spec(kind).placed and placement not in spec(kind).presets:  # the rest must be refused
            with pytest.raises(PlacementError, match=f"no meaning for adapter '{kind}'"):
                targets_for(base.config, adapter, cfg.placement)
            continue
        try:
            targets = targets_for(base.config, adapter, cfg.placement)
        except PlacementError as error:  # only a PEFT method may refuse, and only a module type it has no layer for
            assert spec(kind).inject is not None and arch == "gpt2", error
            assert re.match(f"adapter '{kind}' \\(PEFT's .*Conv1D", str(error)), error
            continue
        model = copy.deepcopy(base)
        prepare(model, adapter, targets)
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        count = sum(p.numel() for p in trainable.values())
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        assert count == expected_count(kind, adapter, targets, base.config, base_total), placement
        # the base model, untouched and frozen (and a PEFT layer's frozen state: AdaLoRA's current rank)
        assert frozen == (0 if kind == "full" else base_total + peft_frozen_state(model)), placement
        if kind == "none":
            assert count == 0
            continue

        # One step: every trainable tensor gets a gradient, frozen ones none and stay bit-identical.
        model.train()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
        model(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
        optimizer.step()
        for name, p in model.named_parameters():
            if name in trainable:
                assert p.grad is not None, f"{placement}: {name} got no gradient"
            else:
                assert p.grad is None and torch.equal(p, before[name]), f"{placement}: frozen {name} changed"
        assert any(not torch.equal(p, before[n]) for n, p in trainable.items()), placement

        # Save, rebuild from the saved config alone, load: the same logits.
        expected = logits(model, ids, mask)
        directory = tmp_path / f"{placement}"
        saving.save(model, adapter, "tiny", targets, directory)
        saved_adapter, saved_targets = saving.read_config(directory, base.config)
        rebuilt = copy.deepcopy(base)
        prepare(rebuilt, saved_adapter, saved_targets)
        saving.load_weights(rebuilt, directory)
        torch.testing.assert_close(logits(rebuilt, ids, mask), expected, atol=1e-6, rtol=0)
