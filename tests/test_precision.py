"""Performance options that must not change what is computed beyond their stated precision: bf16 autocast in
training and generation, and torch.compile for training."""

import copy

import pytest
import torch
from torch import nn

from llm_adapters import adapters
from llm_adapters.adapters import targets_for
from llm_adapters.config import ConfigError, validate
from llm_adapters.evaluation.generation import generate
from llm_adapters.examples import tokenize_for_training
from llm_adapters.models import load_model, load_tokenizer, model_config
from llm_adapters.prompts import evaluation_prompt
from llm_adapters.synthetic import generate as synthetic
from llm_adapters.training import train
from tests.conftest import make_config

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
