"""What the PEFT comparisons share: small sizes for every bridged method, its adapter config as a job composes it,
the same input ids, and trainable weights moved off their start."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from tests.helpers.configs import make_config

IDS = torch.randint(3, 100, (2, 9))
SMALL = {"r": 4, "n_frequency": 100, "init_r": 4, "target_r": 2}


def adapter_of(kind: str, placement: str = "both"):
    cfg = make_config(f"adapter={kind}", f"placement={placement}")
    return {k: SMALL.get(k, v) for k, v in OmegaConf.to_container(cfg.adapter).items()}, cfg.placement


def perturb(model: torch.nn.Module) -> None:
    """Every trainable tensor off its initial value (most methods start as an identity), reproducibly."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
