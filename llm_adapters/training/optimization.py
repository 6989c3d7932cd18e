"""What moves the trainable parameters: AdamW with the HF Trainer's linear schedule, float16 loss scaling, the
generator of the data order and the adapters' training hooks, built, stepped, checkpointed and restored together."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from llm_adapters.adapters import train_hooks
from llm_adapters.errors import ConfigError

log = logging.getLogger(__name__)


def gradient_scaler(device: torch.device, precision: str | None) -> torch.amp.GradScaler:
    """Loss scaling for float16 mixed precision, as the paper's ``fp16=True`` Trainer did (float16 gradients of a
    small loss underflow to zero without it); a disabled scaler, which changes nothing, otherwise. Where the device
    has no float16 scaler, one warning and float16 runs unscaled."""
    if precision != "float16":
        return torch.amp.GradScaler(device.type, enabled=False)
    try:
        return torch.amp.GradScaler(device.type)
    except (RuntimeError, ValueError) as error:
        log.warning("train.autocast=float16 without loss scaling: %s has no gradient scaler (%s)", device, error)
        return torch.amp.GradScaler(device.type, enabled=False)


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``warmup`` steps, then linear decay to 0 at ``total``: the HF Trainer's default
    schedule (tested equal to transformers' get_linear_schedule_with_warmup). Written here because importing that
    module also imports PEFT when it is installed, nearly 2 s of every command's start."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def loraplus_groups(model: torch.nn.Module, lr: float, ratio: float | None) -> list[dict[str, Any]]:
    """The parameter groups: one, or with ``train.loraplus_ratio`` (LoRA+, Hayou et al., 2024) LoRA's B matrices
    and every 1-D trainable tensor at ``ratio`` times the learning rate, as PEFT's ``create_loraplus_optimizer``
    splits them (its embedding group aside: no kind here adapts embeddings)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if ratio is None:
        return [{"params": [p for _, p in named]}]
    faster = [p for n, p in named if "lora_B" in n or p.ndim == 1]
    if not any("lora_B" in n for n, _ in named):
        raise ConfigError(f"train.loraplus_ratio {ratio}: the adapter has no LoRA B matrices for it to speed up")
    ids = {id(p) for p in faster}
    return [{"params": [p for _, p in named if id(p) not in ids]}, {"params": faster, "lr": lr * float(ratio)}]


def optimizer_steps(n_examples: int, cfg: Mapping) -> int:
    """Optimizer steps the run will take: ``max_steps`` when set (as the HF Trainer's, it overrides ``epochs``:
    the data is gone through as many times as it takes), else ceil(examples / batch) per epoch."""
    if cfg["max_steps"]:
        return int(cfg["max_steps"])
    return math.ceil(n_examples / int(cfg["batch_size"])) * int(cfg["epochs"])


@dataclass
class Optimization:
    """What moves the trainable parameters: AdamW, the schedule, float16 loss scaling, the data-order generator and
    the hooks the model's adapters attached (``train_hooks``), saved into and restored from a checkpoint together."""

    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    order_rng: torch.Generator
    hooks: list[train_hooks.TrainHook] = field(default_factory=list)

    @classmethod
    def build(cls, model: torch.nn.Module, cfg: Mapping, total: int, seed: int, device: torch.device) -> Optimization:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            loraplus_groups(model, float(cfg["lr"]), cfg.get("loraplus_ratio")),
            lr=float(cfg["lr"]),
            weight_decay=float(cfg["weight_decay"]),
        )
        scheduler = linear_warmup_decay(optimizer, int(cfg["warmup_steps"]), total)
        scaler = gradient_scaler(device, cfg.get("autocast"))
        hooks = train_hooks.of(model)
        for hook in hooks:
            hook.start(total)
        return cls(params, optimizer, scheduler, scaler, torch.Generator().manual_seed(seed), hooks)

    def extra_loss(self) -> torch.Tensor | float:
        """What the hooks add to each micro-batch's loss."""
        return train_hooks.extra_loss(self.hooks)

    def step(self, max_grad_norm: float | None, number: int = 0) -> None:
        """Optimizer step ``number`` on the accumulated gradients (skipped, and the scale lowered, when float16
        gradients overflowed), then the schedule's and the hooks' (which still see the gradients)."""
        self.scaler.unscale_(self.optimizer)  # clipping sees the true gradients
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, float(max_grad_norm))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        for hook in self.hooks:
            hook.after_step(number)
        self.optimizer.zero_grad(set_to_none=True)

    def state(self, progress: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
        """Everything a checkpoint holds besides the weights (plain containers and tensors only)."""
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "order_rng": self.order_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "progress": dict(progress),
            "hooks": [hook.state_dict() for hook in self.hooks],
        }
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def restore(self, state: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
        """Put a checkpoint's states back; returns where training stood (the ``progress`` it was saved with)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.order_rng.set_state(state["order_rng"])
        for hook, saved in zip(self.hooks, state.get("hooks", []), strict=False):
            hook.load_state_dict(saved)
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return dict(state["progress"])
