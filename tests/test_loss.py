"""The training loss: projecting only the labelled positions onto the vocabulary gives the model's own loss and
the same gradients, for every way an adapter changes the forward pass (on projections, in the KV cache, prepended
to the input)."""

import pytest
import torch
from omegaconf import OmegaConf

from llm_adapters import adapters
from llm_adapters.data.synthetic_math import generate
from llm_adapters.data.training_examples import collate, tokenize_for_training
from llm_adapters.model.loading import load_model, load_tokenizer, model_config
from llm_adapters.training import causal_lm_loss
from tests.helpers.configs import make_config


def _model_and_batch(train_on_inputs: bool, *overrides: str):
    """The embedded default's model (random weights, built-in tokenizer) and a left-padded batch of 4 examples."""
    cfg = make_config(*overrides)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, model_config(cfg.model, tokenizer))
    examples = tokenize_for_training(generate(4, 0, seed=0)[0], tokenizer, 64, train_on_inputs)
    return cfg, model, collate(examples, tokenizer.pad_token_id)


@pytest.mark.parametrize("kind", ["lora", "prefix", "prompt", "series"])
def test_loss_on_labelled_positions_equals_the_models_own(kind):
    cfg, model, batch = _model_and_batch(False, f"adapter={kind}")
    adapter_cfg = OmegaConf.to_container(cfg.adapter, resolve=True)
    targets = [] if kind == "prompt" else adapters.targets_for(model.config, adapter_cfg, cfg.placement)
    adapters.prepare(model, adapter_cfg, targets)
    model.eval()  # no dropout: both passes must see the same function
    assert (batch["labels"][:, 1:] == -100).all(0).sum() > 10, "the prompt must be masked for the shortcut to apply"
    ours = causal_lm_loss(model, batch)
    ours.backward()
    ours_grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    model.zero_grad()
    reference = model(**batch).loss
    reference.backward()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(ours_grads, [p.grad for p in model.parameters() if p.requires_grad], strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)


def test_with_every_position_labelled_it_is_the_plain_forward():
    _, model, batch = _model_and_batch(True)
    torch.testing.assert_close(causal_lm_loss(model, batch), model(**batch).loss, rtol=0, atol=0)


def test_max_steps_overrides_epochs_as_the_trainers_does():
    from llm_adapters.training.optimization import optimizer_steps

    cfg = {"batch_size": 16, "epochs": 2, "max_steps": None}
    assert optimizer_steps(64, cfg) == 8  # 4 steps an epoch, 2 epochs
    assert optimizer_steps(64, {**cfg, "max_steps": 20}) == 20  # more than the epochs hold: 5 passes over the data
    assert optimizer_steps(64, {**cfg, "max_steps": 3}) == 3


def test_training_runs_past_the_epochs_to_max_steps():
    from llm_adapters.training import train

    cfg, model, _ = _model_and_batch(False, "train.max_steps=5", "train.batch_size=4", "train.micro_batch_size=4")
    tokenizer = load_tokenizer(cfg.model)
    examples = tokenize_for_training(generate(8, 0, seed=0)[0], tokenizer, 64, False)  # 2 steps an epoch
    adapter_cfg = OmegaConf.to_container(cfg.adapter, resolve=True)
    adapters.prepare(model, adapter_cfg, adapters.targets_for(model.config, adapter_cfg, cfg.placement))
    fit = train(model, examples, cfg.train, tokenizer.pad_token_id, seed=0, device=torch.device("cpu"))
    assert fit.steps == 5
    assert [step for step, _ in fit.loss_history] == [1, 5]  # fewer steps than log_every: the first and the last
