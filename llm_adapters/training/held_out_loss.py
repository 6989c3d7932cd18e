"""The paper's validation split and best checkpoint (finetune.py with ``--val_set_size``).

``train.val_set_size`` training records are held out exactly as finetune.py held them out — HF datasets'
``train_test_split(test_size=N, shuffle=True, seed=42)``: a NumPy ``default_rng(42)`` permutation, the first N
indices for validation — whatever the job's seed. Every ``train.eval_every`` optimizer steps their loss is computed
(the HF Trainer's eval loss: each batch's mean token loss, weighted by the batch's examples), logged as
``val/loss``; with ``train.keep: best`` the weights of the step with the lowest one are put back at the end, as
``load_best_model_at_end`` did (only evaluated steps are candidates, the last step only when it is one).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from llm_adapters.data.training_examples import Examples, collate
from llm_adapters.model.loading import autocast

PAPER_SPLIT_SEED = 42  # finetune.py's train_test_split seed, fixed whatever the run's seed


def split(examples: Examples, size: int) -> tuple[Examples, Examples]:
    """(training, validation) as finetune.py split them (views of the same table); all for training when ``size``
    is 0."""
    if not size:
        return examples, examples.select([])
    if size >= len(examples):
        raise ValueError(f"train.val_set_size {size} leaves nothing to train on ({len(examples)} records)")
    permutation = np.random.default_rng(PAPER_SPLIT_SEED).permutation(len(examples))
    return examples.select(permutation[size:]), examples.select(permutation[:size])


@torch.no_grad()
def loss(
    model: torch.nn.Module,
    examples: Examples,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    precision: str | None,
) -> float:
    """The validation loss, in eval mode (no dropout); the model is back in training mode afterwards."""
    model.eval()
    total = 0.0
    try:
        for first in range(0, len(examples), batch_size):
            chunk = examples[first : first + batch_size]
            batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
            with autocast(device, precision):
                total += float(model(**batch).loss) * len(chunk)
    finally:
        model.train()
    return total / len(examples)


def trainable_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights as they are now (on the CPU), to put back if this step stays the best."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def restore(model: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Put kept trainable weights back into ``model``."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
