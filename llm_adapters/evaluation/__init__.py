"""Evaluation, by methods of one registry (``methods``): ``eval.method=generate`` (the paper's protocol, beam search
and its scoring rules; ``generation``) and ``eval.method=loglik`` (multiple choice by log-likelihood, lm-evaluation-
harness's way; ``likelihood``). Each method owns its prompts, its context check, its scoring and the fields of its
prediction rows; a job asks the registry, never an ``if`` on the method. Every module of this package is imported
here, and each method's module registers its record."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Mapping, Sequence
from typing import Any

from llm_adapters.data.sets import EVAL_SETS, EvalSet, Record
from llm_adapters.errors import ConfigError
from llm_adapters.evaluation.methods import METHODS, Method, method
from llm_adapters.evaluation.scoring import score_text

__all__ = ["METHODS", "Method", "check_config", "check_context", "evaluate_all", "evaluated", "method"]
log = logging.getLogger(__name__)


def evaluated(records: Sequence[Record], cfg: Mapping) -> Sequence[Record]:
    """The records of a set that are evaluated: the first ``eval.max_samples`` (all when it is null)."""
    return records[: cfg["max_samples"]] if cfg["max_samples"] else records


def evaluate_all(
    model: Any,
    tokenizer: Any,
    eval_sets: Mapping[str, tuple[EvalSet, Sequence[Record]]],
    cfg: Mapping,
    device: Any,
    desc: str = "eval",
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Accuracy per evaluation set (its ``evaluated`` records) by ``eval.method``, and every prediction row."""
    scorer = method(cfg["eval"].get("method", "generate")).evaluate_set
    metrics: dict[str, dict[str, Any]] = {}
    predictions: list[dict[str, Any]] = []
    for name, (spec, records) in eval_sets.items():
        subset = evaluated(records, cfg["eval"])
        metrics[name], rows = scorer(model, tokenizer, spec, subset, cfg["eval"], cfg["protocol"], device, desc)
        log.info("%s %s: %s in %.1f s", desc, name, score_text(metrics[name]), metrics[name]["seconds"])
        predictions += rows
    return metrics, predictions


def check_config(cfg: Mapping) -> None:
    """Before anything loads: ``eval.method`` is a method, every set is of a domain it scores, and ``eval.prompt``
    is one of its prompt styles."""
    chosen = method(cfg["method"])
    domain = {name: EVAL_SETS[name].domain if name in EVAL_SETS else "math" for name in cfg["datasets"]}
    if wrong := [name for name, d in domain.items() if d not in chosen.domains]:
        raise ConfigError(
            f"eval.method={chosen.name} scores {'/'.join(chosen.domains)} sets: {', '.join(wrong)} cannot be scored "
            "by it (eval.method=generate scores every set)"
        )
    style = cfg.get("prompt")
    if style is not None and style not in chosen.prompts:
        styles = ", ".join(chosen.prompts) or "none"
        raise ConfigError(f"eval.prompt={style}: eval.method={chosen.name} has no such prompt style (it has: {styles})")


def check_context(
    config: Any,
    tokenizer: Any,
    eval_sets: Mapping[str, tuple[EvalSet, Sequence[Record]]],
    cfg: Mapping,
    virtual_tokens: int = 0,
) -> None:
    """What the method could not score, refused with its set and record before training (``Method.check``)."""
    chosen = method(cfg.get("method", "generate"))
    for name, (spec, records) in eval_sets.items():
        if cfg.get("max_samples") and cfg["max_samples"] > len(records):  # said before training, not found in a table
            log.warning(
                "eval.max_samples=%d: %s has %d questions, all of them scored", cfg["max_samples"], name, len(records)
            )
        chosen.check(spec, evaluated(records, cfg), config, tokenizer, chosen.extra(cfg) + virtual_tokens, cfg)


for _module in pkgutil.iter_modules(__path__):  # each method's module registers its record on import
    importlib.import_module(f"{__name__}.{_module.name}")
