"""The rest of the family against references: (IA)³ and prompt tuning equal PEFT's; sublayer adapters equal an
explicit reimplementation of the sublayer; MAM composes; fused-projection slices touch only their rows."""

import copy

import peft
import pytest
import torch
from torch import nn

from llm_adapters.adapters import inject, merge_adapters, prefix, prepare, prompt, targets_for
from llm_adapters.data.synthetic_math import generate as synthetic
from llm_adapters.data.templates import evaluation_prompt
from llm_adapters.evaluation.generation import generate
from llm_adapters.model.architectures import architecture_of
from llm_adapters.model.loading import count_parameters
from tests.helpers.configs import build_model, make_config
from tests.helpers.models import families, fused_families, tiny_model

IA3 = {"kind": "ia3"}


def perturb(model: nn.Module, std: float = 0.3) -> None:
    """Move every trainable parameter off its init, so an adapter that does nothing cannot pass."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * std)


def padded_batch():
    ids = torch.randint(3, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    return ids, mask


@pytest.mark.parametrize("model_type", families())
def test_ia3_equals_peft_ia3_and_merges_exactly(model_type):
    base = tiny_model(model_type)
    ours = copy.deepcopy(base)
    targets = targets_for(ours.config, IA3, make_config("placement=best").placement)
    inject(ours, IA3, targets)
    perturb(ours)
    names = [t.module_name for t in targets]  # full names: GPT-2 has two c_proj
    feedforward = [t.module_name for t in targets if t.site == "mlp.down"]
    reference = peft.get_peft_model(
        base, peft.IA3Config(task_type="CAUSAL_LM", target_modules=names, feedforward_modules=feedforward)
    )
    with torch.no_grad():
        for target in targets:
            theirs = reference.base_model.model.get_submodule(target.module_name).ia3_l["default"]
            theirs.copy_(ours.get_submodule(target.module_name).ia3_scale.view_as(theirs))
    ids, mask = padded_batch()
    expected = reference.eval()(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(ours.eval()(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=0)
    assert count_parameters(ours)["trainable"] == sum(p.numel() for p in reference.parameters() if p.requires_grad)
    assert merge_adapters(ours) == len(targets)
    torch.testing.assert_close(ours(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=1e-5)


def prompt_pair(model_type: str, tokens: int = 4):
    """Our prompt-tuned model and PEFT's, holding the same virtual-token embeddings."""
    base = tiny_model(model_type)
    ours = copy.deepcopy(base).requires_grad_(False)
    prompt.attach(ours, {"num_virtual_tokens": tokens, "init": "random"})
    reference = peft.get_peft_model(base, peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=tokens))
    with torch.no_grad():
        ours.prompt_tuning.embedding.weight.mul_(0.05)  # N(0, 1) rows swamp a tiny model's embeddings
        reference.prompt_encoder["default"].embedding.weight.copy_(ours.prompt_tuning.embedding.weight)
    return ours.eval(), reference.eval()


@pytest.mark.parametrize("model_type", families())
def test_prompt_tuning_equals_peft(model_type):
    ours, reference = prompt_pair(model_type)
    ids = torch.randint(3, 100, (2, 9))
    theirs = reference(input_ids=ids, labels=ids)
    mine = ours(input_ids=ids, labels=ids)
    # PEFT returns the virtual tokens' logits too; ours drops them so logits line up with the input ids.
    torch.testing.assert_close(mine.logits, theirs.logits[:, 4:], atol=1e-5, rtol=0)
    torch.testing.assert_close(mine.loss, theirs.loss, atol=1e-6, rtol=0)
    assert count_parameters(ours)["trainable"] == 4 * ours.config.hidden_size


@pytest.mark.parametrize("model_type", ["llama", "opt", "bloom"])
def test_prompt_tuning_cached_generation_equals_greedy_over_the_forward(model_type):
    ours, reference = prompt_pair(model_type)
    ids = torch.randint(3, 100, (2, 7))
    generated = ours.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False, pad_token_id=0
    )
    sequence = ids
    with torch.no_grad():
        for _ in range(6):
            step = reference(input_ids=sequence).logits[:, -1]
            sequence = torch.cat([sequence, step.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated, sequence)


@pytest.mark.parametrize("num_beams", [1, 4])
def test_batched_prompt_tuning_generation_equals_one_at_a_time(num_beams):
    model, tokenizer, *_ = build_model(make_config("adapter=prompt", "adapter.init=vocab"))
    prompts = [evaluation_prompt(r["instruction"]) for r in synthetic(8, 0, seed=3)[0]]
    cfg = {"num_beams": num_beams, "max_new_tokens": 8}
    one = generate(model.eval(), tokenizer, prompts, {**cfg, "batch_size": 1}, torch.device("cpu"))
    assert generate(model, tokenizer, prompts, {**cfg, "batch_size": 8}, torch.device("cpu")) == one


class Beside(nn.Module):
    """Reference: a sublayer module with s · up(f(down(x))) of its input added to its output (He et al.)."""

    def __init__(self, sublayer: nn.Module, adapter: nn.Module) -> None:
        super().__init__()
        self.sublayer, self.adapter = sublayer, adapter

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        out = self.sublayer(hidden_states, *args, **kwargs)
        if isinstance(out, tuple):
            return (out[0] + self.adapter(hidden_states), *out[1:])
        return out + self.adapter(hidden_states)


class InSeries(nn.Module):
    """Reference: a sublayer that reads x + adapter(x) (``input``) or writes o + adapter(o) (``output``)."""

    def __init__(self, sublayer: nn.Module, adapter: nn.Module, point: str) -> None:
        super().__init__()
        self.sublayer, self.adapter, self.point = sublayer, adapter, point

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        if self.point == "input":
            return self.sublayer(hidden_states + self.adapter(hidden_states), *args, **kwargs)
        out = self.sublayer(hidden_states, *args, **kwargs)
        if isinstance(out, tuple):
            return (out[0] + self.adapter(out[0]), *out[1:])
        return out + self.adapter(out)


SUBLAYER_CASES = [
    ("scaled_parallel", "attn", lambda s, a: Beside(s, a)),
    ("scaled_parallel", "mlp", lambda s, a: Beside(s, a)),
    ("series", "attn.input", lambda s, a: InSeries(s, a, "input")),  # one adapter read by q, k and v
    ("series", "attn.output", lambda s, a: InSeries(s, a, "output")),
    ("series", "mlp.input", lambda s, a: InSeries(s, a, "input")),  # one adapter read by gate and up
    ("series", "mlp.output", lambda s, a: InSeries(s, a, "output")),
]


@pytest.mark.parametrize(("kind", "site", "reference_of"), SUBLAYER_CASES)
def test_sublayer_adapters_equal_a_reimplemented_sublayer(kind, site, reference_of):
    base = tiny_model("llama")
    ours = copy.deepcopy(base)
    cfg = make_config(f"adapter={kind}", f"placement.sites=[{site}]", "adapter.bottleneck_size=8")
    adapter_cfg = dict(cfg.adapter)
    prepare(ours, adapter_cfg, targets_for(ours.config, adapter_cfg, cfg.placement))
    perturb(ours)
    reference = copy.deepcopy(base)
    module = {"attn": "self_attn", "mlp": "mlp"}[site.split(".")[0]]
    for block, theirs in zip(ours.model.layers, reference.model.layers, strict=True):
        adapter = block.sublayer_adapters[site.replace(".", "_")].adapter
        setattr(theirs, module, reference_of(getattr(theirs, module), copy.deepcopy(adapter)))
    ids, mask = padded_batch()
    torch.testing.assert_close(
        ours(input_ids=ids, attention_mask=mask).logits,
        reference(input_ids=ids, attention_mask=mask).logits,
        atol=1e-5,
        rtol=0,
    )
    hidden = base.config.hidden_size
    assert count_parameters(ours)["trainable"] == 3 * 2 * hidden * 8  # one square bottleneck per block


@pytest.mark.parametrize("site", ["mlp", "attn.input"])
def test_sublayer_adapters_train_the_same_under_gradient_checkpointing(site):
    """The hooks keep the sublayer's input between projections; a recomputed forward must redo that exactly."""
    grads = []
    for checkpointing in (False, True):
        model = tiny_model("llama")
        kind = "scaled_parallel" if site == "mlp" else "series"
        cfg = make_config(f"adapter={kind}", f"placement.sites=[{site}]", "adapter.bottleneck_size=8")
        prepare(model, dict(cfg.adapter), targets_for(model.config, dict(cfg.adapter), cfg.placement))
        perturb(model)
        if checkpointing:
            model.gradient_checkpointing_enable()
        model.train()
        ids = torch.randint(3, 100, (2, 9))
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-6, rtol=1e-5)


def test_mam_is_prefix_tuning_plus_a_scaled_parallel_adapter():
    cfg = make_config("adapter=mam", "placement=best", "adapter.num_virtual_tokens=4", "adapter.bottleneck_size=8")
    adapter_cfg = dict(cfg.adapter)
    base = tiny_model("llama")
    mam = copy.deepcopy(base)
    prepare(mam, adapter_cfg, targets_for(mam.config, adapter_cfg, cfg.placement))
    only_prefix = copy.deepcopy(base).requires_grad_(False)
    prefix.attach(only_prefix, adapter_cfg)
    with torch.no_grad():
        only_prefix.prefix_tuning.load_state_dict(mam.prefix_tuning.state_dict())
    ids, mask = padded_batch()
    # The scaled parallel adapter starts as an identity (zero up projection): MAM starts as its prefix alone.
    expected = only_prefix.eval()(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(mam.eval()(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-6, rtol=0)
    hidden, layers = base.config.hidden_size, base.config.num_hidden_layers
    kv_width = layers * 2 * base.config.num_key_value_heads * hidden // base.config.num_attention_heads
    prefix_count = 4 * hidden + (hidden * 512 + 512) + (512 * kv_width + kv_width)
    assert count_parameters(mam)["trainable"] == prefix_count + layers * 2 * hidden * 8
    # One step trains both parts.
    mam.train()
    optimizer = torch.optim.SGD([p for p in mam.parameters() if p.requires_grad], lr=0.1)
    before = {n: p.detach().clone() for n, p in mam.named_parameters() if p.requires_grad}
    mam(input_ids=ids, attention_mask=mask, labels=ids).loss.backward()
    optimizer.step()
    changed = {n for n, p in mam.named_parameters() if p.requires_grad and not torch.equal(p, before[n])}
    assert any(n.startswith("prefix_tuning.") for n in changed)
    assert any(".sublayer_adapters.mlp." in n for n in changed)


def qkv_parts(model, ids):
    """Per layer, the fused projection's output split into q, k and v the way the model's own attention splits it."""
    arch = architecture_of(model.config)
    outputs = []
    hooks = [
        model.get_submodule(f"{arch.layers}.{i}.{arch.sites['attn.q']}").register_forward_hook(
            lambda module, args, out: outputs.append(out.detach())
        )
        for i in range(model.config.num_hidden_layers)
    ]
    with torch.no_grad():
        model(input_ids=ids)
    for hook in hooks:
        hook.remove()
    heads = model.config.num_attention_heads
    if arch.fused_layout == "contiguous":  # GPT-2: split(hidden) into q | k | v
        return [out.view(*out.shape[:2], 3, -1).unbind(2) for out in outputs]
    return [out.view(*out.shape[:2], heads, 3, -1).unbind(3) for out in outputs]  # BLOOM, GPT-NeoX: per head


@pytest.mark.parametrize("model_type", fused_families())
@pytest.mark.parametrize("kind", ["lora", "dora", "parallel", "ia3"])
def test_a_fused_slice_adapts_only_its_rows(model_type, kind):
    base = tiny_model(model_type)
    adapted = copy.deepcopy(base)
    cfg = make_config(f"adapter={kind}", "placement.sites=[attn.v]", "placement.layers=[0]")
    adapter_cfg = {**dict(cfg.adapter), **({"bottleneck_size": 8} if kind == "parallel" else {})}
    targets = targets_for(adapted.config, adapter_cfg, cfg.placement)
    assert [t.sliced for t in targets] == [True]
    prepare(adapted, adapter_cfg, targets)
    perturb(adapted)
    adapted.eval()
    ids = torch.randint(3, 100, (2, 9))
    (q0, k0, v0), *_ = qkv_parts(base, ids)
    (q1, k1, v1), *_ = qkv_parts(adapted, ids)
    assert torch.equal(q0, q1) and torch.equal(k0, k1)
    assert not torch.allclose(v0, v1, atol=1e-4)
    hidden = base.config.hidden_size
    lora = 32 * (hidden + hidden)
    expected = {"lora": lora, "dora": lora + hidden, "parallel": 8 * (hidden + hidden), "ia3": hidden}[kind]
    assert count_parameters(adapted)["trainable"] == expected
    if kind != "parallel":  # the rest fold into the frozen rows exactly
        before = adapted(input_ids=ids).logits
        assert merge_adapters(adapted) == 1
        torch.testing.assert_close(adapted(input_ids=ids).logits, before, atol=1e-5, rtol=1e-5)


def test_two_slices_of_one_projection_each_get_their_own_lora_and_merge_exactly():
    base = tiny_model("bloom")
    model = copy.deepcopy(base)
    cfg = make_config("adapter=lora", "placement.sites=[attn.q,attn.v]", "adapter.r=4")
    targets = targets_for(model.config, dict(cfg.adapter), cfg.placement)
    assert len(targets) == 2 * 2 and all(t.sliced for t in targets)
    prepare(model, dict(cfg.adapter), targets)
    perturb(model)
    model.eval()  # no LoRA dropout
    hidden = base.config.hidden_size
    assert count_parameters(model)["trainable"] == 2 * 2 * 4 * (hidden + hidden)  # as LLaMA's separate q and v
    ids = torch.randint(3, 100, (2, 9))
    (q0, k0, v0), *_ = qkv_parts(base, ids)
    (q1, k1, v1), *_ = qkv_parts(model, ids)
    assert torch.equal(k0, k1) and not torch.allclose(q0, q1, atol=1e-4) and not torch.allclose(v0, v1, atol=1e-4)
    expected = model(input_ids=ids).logits
    assert merge_adapters(model) == 4
    torch.testing.assert_close(model(input_ids=ids).logits, expected, atol=1e-5, rtol=1e-5)
