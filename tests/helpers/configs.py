"""Composing the project's configs as a job does, and the overrides that make a job take seconds."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig

from llm_adapters.job.composition import compose

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"
MODEL_CACHE = Path(os.environ.get("LLM_ADAPTERS_MODEL_CACHE", "~/.cache/llm-adapters/models")).expanduser()

# Overrides that make a job take seconds: a few steps, a few short generations (and for the synthetic data, a
# small training split).
QUICK = [
    "logger=none",
    "train.resume=false",
    "train.max_steps=6",
    "train.log_every=2",
    "train.warmup_steps=2",
    "eval.max_new_tokens=8",
]
FAST = [*QUICK, "dataset.train_size=64", "dataset.test_size=8"]


def build_model(cfg: DictConfig):
    """The tokenizer, the model and its adapter as a job builds them, with nothing in between (phases.Built)."""
    from llm_adapters.job import phases

    built = phases.build_base(cfg)
    phases.attach(cfg, built)
    return built


def make_config(*overrides: str) -> DictConfig:
    """The project's config as ``python run.py`` would compose it, with overrides."""
    return compose(*overrides)
