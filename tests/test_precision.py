"""Performance options that must not change what is computed beyond their stated precision: bf16 autocast in
training and generation, and torch.compile for training."""

import copy
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from llm_adapters import adapters
from llm_adapters.adapters import targets_for
from llm_adapters.data.synthetic_math import generate as synthetic
from llm_adapters.data.templates import evaluation_prompt
from llm_adapters.data.training_examples import tokenize_for_training
from llm_adapters.evaluation.generation import generate
from llm_adapters.job.config import ConfigError, validate
from llm_adapters.model.loading import load_model, load_tokenizer, model_config
from llm_adapters.training import compiling, train
from tests.helpers.configs import make_config

CPU = torch.device("cpu")


def lora_job(*overrides: str):
    cfg = make_config("train.max_steps=4", "train.warmup_steps=1", "train.log_every=1", *overrides)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, model_config(cfg.model, tokenizer))
    adapters.inject(model, cfg.adapter, targets_for(model.config, {"kind": cfg.adapter.kind}, cfg.placement))
    records, _ = synthetic(64, 0, seed=0)
    examples = tokenize_for_training(records, tokenizer, cfg.train.cutoff_len, cfg.train.train_on_inputs)
    return cfg, model, tokenizer, examples


def product_dtypes(model):
    """Record the dtype of every frozen projection's output while hooked."""
    seen: set[torch.dtype] = set()
    hooks = [
        m.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.endswith("base_layer")
    ]
    return seen, hooks


@pytest.mark.parametrize("precision", [None, "bfloat16", "float16"])
def test_autocast_runs_products_in_half_precision_and_keeps_adapters_fp32(precision):
    overrides = [f"train.autocast={precision}", f"eval.autocast={precision}"] if precision else []
    cfg, model, tokenizer, examples = lora_job(*overrides)
    seen, hooks = product_dtypes(model)
    fit = train(model, examples, cfg.train, tokenizer.pad_token_id, seed=0, device=CPU)
    trained = set(seen)
    seen.clear()
    prompts = [evaluation_prompt(r["instruction"]) for r in synthetic(4, 0, seed=1)[0]]
    texts = generate(model.eval(), tokenizer, prompts, {**cfg.eval, "max_new_tokens": 4}, CPU)
    for hook in hooks:
        hook.remove()
    expected = {getattr(torch, precision)} if precision else {torch.float32}
    assert trained == expected and seen == expected
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights and adapters untouched
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in fit.loss_history) and len(texts) == 4


def test_float16_training_follows_float32_with_loss_scaling():
    """The paper trained with fp16=True: float16 products, a gradient scaler, the same losses as float32 within
    float16's precision."""
    losses = {}
    for precision in (None, "float16"):
        cfg, model, tokenizer, examples = lora_job(*([f"train.autocast={precision}"] if precision else []))
        fit = train(model, examples, cfg.train, tokenizer.pad_token_id, seed=0, device=CPU)
        losses[precision] = [loss for _, loss in fit.loss_history]
    assert losses["float16"] == pytest.approx(losses[None], rel=2e-2)
    assert losses["float16"] != losses[None]  # float16 really ran


def test_autocast_keys_are_checked():
    validate(make_config("train.autocast=bfloat16", "eval.autocast=float16"))
    validate(make_config("train.autocast=float16"))
    with pytest.raises(ConfigError, match=r"train.autocast must be null, bfloat16 or float16 \(got 'int8'\)"):
        validate(make_config("train.autocast=int8"))
    with pytest.raises(ConfigError, match=r"eval.autocast must be null, bfloat16 or float16"):
        validate(make_config("eval.autocast=int8"))


@pytest.mark.slow
def test_compiled_training_matches_eager():
    """torch.compile (inductor, which needs a C compiler) takes about a minute to compile on 2 CPU cores."""
    cfg, model, tokenizer, examples = lora_job()
    compiled = copy.deepcopy(model)
    eager_fit = train(model, examples, cfg.train, tokenizer.pad_token_id, seed=0, device=CPU)
    compiled_cfg = {**cfg.train, "compile": True}
    compiled_fit = train(compiled, examples, compiled_cfg, tokenizer.pad_token_id, seed=0, device=CPU)
    eager = [loss for _, loss in eager_fit.loss_history]
    fused = [loss for _, loss in compiled_fit.loss_history]
    assert fused[0] == pytest.approx(eager[0], rel=1e-5)  # the same weights give the same loss
    # Later steps drift apart by float rounding only (fused kernels reorder sums; Adam amplifies it).
    assert fused == pytest.approx(eager, rel=1e-3)
    capability = torch.backends.cpu.get_cpu_capability().lower()
    cache = Path(os.environ[compiling.CACHE_VARIABLE])  # the kernels went to this capability's folder
    assert f"_{capability}_" in cache.name and any(cache.rglob("*.so"))


def test_each_cpu_capability_compiles_into_its_own_inductor_cache(monkeypatch):
    """Kernels built for one vector width or CPU, loaded by a process on another, crash it (see compiling)."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    default = os.path.abspath(default_cache_dir())
    folders = {}
    for capability, flags in (("AVX2", {"avx2"}), ("AVX512", {"avx2", "avx512f"}), ("AVX512", {"avx2", "amx_bf16"})):
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
        monkeypatch.setattr(compiling, "cpu_flags", lambda f=flags: frozenset(f))
        monkeypatch.delenv(compiling.CACHE_VARIABLE, raising=False)
        folder = compiling.cache_dir_for_this_cpu()
        monkeypatch.setenv(compiling.CACHE_VARIABLE, default)  # what inductor writes back after compiling
        assert compiling.cache_dir_for_this_cpu() == folder and folder.startswith(f"{default}_{capability.lower()}_")
        folders[(capability, *sorted(flags))] = folder
    assert len(set(folders.values())) == 3
    monkeypatch.setenv(compiling.CACHE_VARIABLE, "/data/my-cache")  # a folder the user chose is kept
    assert compiling.cache_dir_for_this_cpu() == "/data/my-cache"


def test_a_half_precision_frozen_head_reads_a_contiguous_slice_and_gives_the_same_logits():
    """``logits_to_keep`` hands the output layer a strided slice; with the base frozen in bf16, matmul would run a
    batched product over the weight expanded (copied) per sequence. The loaded model folds it into one product
    instead: no ``aten::bmm`` in the forward, and the logits equal those of the plain strided call."""
    from torch.profiler import profile

    cfg = make_config("model.dtype=bfloat16")
    model = load_model(cfg.model, model_config(cfg.model, load_tokenizer(cfg.model))).requires_grad_(False).eval()
    ids = torch.randint(3, 500, (4, 12))
    with torch.no_grad(), profile() as trace:
        kept = model(input_ids=ids, logits_to_keep=3).logits
    assert not [e for e in trace.events() if e.name == "aten::bmm"]
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[:, -3:, :]
        strided = nn.functional.linear(hidden, model.lm_head.weight)  # the call without the fold
    assert not hidden.is_contiguous() and torch.equal(kept, strided)
    fp32 = make_config()
    assert not load_model(fp32.model, model_config(fp32.model, load_tokenizer(fp32.model))).lm_head._forward_pre_hooks


@pytest.mark.parametrize(
    ("flags", "dtype", "warned"),
    [
        ({"avx2", "avx512f"}, "bfloat16", True),  # no bf16 instructions: emulated, slower than float32
        ({"avx2", "avx512_bf16"}, "bfloat16", False),
        ({"avx2", "amx_bf16"}, "bfloat16", False),
        ({"avx2", "avx512f"}, "float32", False),
        ({"avx2", "avx512_bf16"}, "float16", True),
    ],
)
def test_a_half_precision_base_on_a_cpu_without_its_units_warns_once(flags, dtype, warned, monkeypatch, caplog):
    from llm_adapters.model import loading

    monkeypatch.setattr(loading, "cpu_flags", lambda: frozenset(flags))
    loading.warn_if_slow.cache_clear()
    for _ in range(2):
        loading.warn_if_slow(dtype, "cpu")
    loading.warn_if_slow(dtype, "cuda")
    found = [r.getMessage() for r in caplog.records if "slower than float32" in r.getMessage()]
    assert len(found) == int(warned), found
    loading.warn_if_slow.cache_clear()
