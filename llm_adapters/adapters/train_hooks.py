"""What an adapter may ask of the training loop, without the loop knowing which adapter asks.

Most adapters are trained by the loss and AdamW alone. A few are not: AdaLoRA reallocates its rank budget after
every optimizer step (from the gradients, before they are cleared) and adds an orthogonality penalty to the loss.
Such an adapter, when it is put on a model, attaches a ``TrainHook`` to it; the loop (``Optimization``) starts the
hooks with the run's step count, adds their loss terms, calls them after each step and keeps their state in every
checkpoint, so a resumed run continues their schedule exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

ATTR = "_train_hooks"  # where a model keeps its hooks (a plain list, not a submodule: nothing is saved with the model)


class TrainHook(Protocol):
    """One adapter's part in the training loop."""

    def start(self, total_steps: int) -> None:
        """Before the first step: the number of optimizer steps the run takes (raise ConfigError if it cannot)."""

    def loss(self) -> torch.Tensor | None:
        """A term added to every micro-batch's loss (None: nothing)."""

    def after_step(self, step: int) -> None:
        """After optimizer step ``step`` (1 for the first), while the step's gradients are still there."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold to continue the hook where it stood (plain containers and tensors)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Put back what ``state_dict`` returned."""


def attach(model: nn.Module, hook: TrainHook) -> None:
    """Give ``model`` a hook the training loop will call."""
    object.__setattr__(model, ATTR, [*of(model), hook])


def of(model: nn.Module) -> list[TrainHook]:
    """The hooks attached to ``model``, in the order they were attached."""
    return list(getattr(model, ATTR, []))


def extra_loss(hooks: Sequence[TrainHook]) -> torch.Tensor | float:
    """The sum of the hooks' loss terms (0.0 without any)."""
    terms = [term for term in (hook.loss() for hook in hooks) if term is not None]
    return sum(terms[1:], terms[0]) if terms else 0.0
