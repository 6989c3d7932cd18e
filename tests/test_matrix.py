"""Every adapter × every preset placement × every architecture family: it builds (or is refused with a clear error
where the combination has no meaning), only adapter parameters train, one optimizer step changes only them, the
trainable count equals the closed form computed from the config's numbers, and save → load reproduces the logits."""

import copy
from functools import cache

import pytest
import torch

from llm_adapters.adapters import adapter_kinds, prepare, saving, spec, targets_for
from llm_adapters.adapters.bottleneck import INPUT_SIDE_SITES
from llm_adapters.architectures import PROJECTION_SITES, architecture_of
from llm_adapters.placement import PlacementError
from tests.conftest import llama_site_dims, make_config, tiny_model

ARCHITECTURES = ["llama", "gptj", "opt", "bloom", "gpt_neox", "gpt2"]
PLACEMENTS = ("attn", "mlp", "both", "best")
KINDS = adapter_kinds()  # every registered kind, so a new one is in the matrix without a line here
SMALL = {"r": 4, "bottleneck_size": 8, "num_virtual_tokens": 3, "projection_hidden": 16}  # where a kind has them


def site_dims(config) -> dict[str, tuple[int, int]]:
    """(in, out) of each projection site from the config's numbers alone."""
    hidden, heads = config.hidden_size, config.num_attention_heads
    inner = next(
        (v for k in ("intermediate_size", "ffn_dim", "n_inner") if (v := getattr(config, k, None))), 4 * hidden
    )
    return llama_site_dims(hidden, inner, heads, getattr(config, "num_key_value_heads", None) or heads)


def closed_form(kind: str, adapter: dict, targets, config, base_total: int) -> int:
    """The trainable-parameter count each adapter's definition gives."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    dims, fused = site_dims(config), architecture_of(config).fused
    kv = dims["attn.k"][1]
    if kind == "full":
        return base_total
    if kind == "prompt":
        return adapter["num_virtual_tokens"] * hidden
    total = 0
    if kind in ("prefix", "mam"):
        vt, width = adapter["num_virtual_tokens"], layers * 2 * kv
        if adapter["prefix_projection"]:
            mlp = adapter["projection_hidden"]
            total += vt * hidden + (hidden * mlp + mlp) + (mlp * width + width)
        else:
            total += vt * width
    for t in targets:
        if t.site not in PROJECTION_SITES:  # a square bottleneck on the hidden stream
            total += 2 * hidden * adapter["bottleneck_size"]
            continue
        d_in, d_out = dims[t.site]
        if t.site in fused and not t.sliced:
            d_out = 3 * hidden  # the whole fused projection
        if kind in ("lora", "dora"):
            total += adapter["r"] * (d_in + d_out) + (d_out if kind == "dora" else 0)
        elif kind == "parallel":
            total += adapter["bottleneck_size"] * (d_in + d_out)
        elif kind in ("series", "adapterh"):
            total += 2 * adapter["bottleneck_size"] * (d_in if t.site in INPUT_SIDE_SITES else d_out)
        elif kind == "ia3":
            total += d_in if t.site == "mlp.down" else d_out
    return total


@cache
def composed(kind: str, placement: str):
    """The job config for a kind and preset (composed once for all architectures)."""
    return make_config(f"adapter={kind}", f"placement={placement}")


def logits(model, ids, mask):
    with torch.no_grad():
        return model.eval()(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("kind", [*KINDS, "none", "full"])
def test_adapter_at_every_preset(kind, arch, tmp_path):
    base = tiny_model(arch)
    base_total = sum(p.numel() for p in base.parameters())
    ids = torch.randint(3, 100, (2, 8))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    for placement in PLACEMENTS:
        cfg = composed(kind, placement)
        adapter = {key: SMALL.get(key, value) for key, value in cfg.adapter.items()}
        if spec(kind).placed and placement not in spec(kind).presets:  # the rest must be refused
            with pytest.raises(PlacementError, match=f"no meaning for adapter '{kind}'"):
                targets_for(base.config, adapter, cfg.placement)
            continue
        targets = targets_for(base.config, adapter, cfg.placement)
        model = copy.deepcopy(base)
        prepare(model, adapter, targets)
        trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        count = sum(p.numel() for p in trainable.values())
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        assert count == closed_form(kind, adapter, targets, base.config, base_total), placement
        assert frozen == (0 if kind == "full" else base_total), placement  # the base model, untouched and frozen
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
