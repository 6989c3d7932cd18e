"""The training loss: projecting only the labelled positions onto the vocabulary gives the model's own loss and
the same gradients, for every way an adapter changes the forward pass (on projections, in the KV cache, prepended
to the input)."""

import pytest
import torch
from omegaconf import OmegaConf

from llm_adapters import adapters
from llm_adapters.data import collate, tokenize_for_training
from llm_adapters.models import load_model, load_tokenizer, model_config
from llm_adapters.synthetic import generate
from llm_adapters.training import causal_lm_loss
from tests.conftest import make_config


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
