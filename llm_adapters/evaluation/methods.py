"""The registry of evaluation methods: one record per method, registered at the bottom of the method's own module,
so a third method is one module in this package and nothing else."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from llm_adapters.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """What one ``eval.method`` is.

    ``evaluate_set(model, tokenizer, spec, records, eval_cfg, protocol, device, desc)`` → (metrics, prediction rows):
    its prompts, scoring and rows. ``check(spec, records, model_config, tokenizer, extra, eval_cfg)``: refuses,
    naming the set and record, what it could not score (a prompt too long for the context with ``extra`` more
    positions, options that do not parse), before training. ``extra(eval_cfg)``: the positions it needs beyond the
    prompt. ``domains``: the kinds of sets it scores. ``prompts``: the prompt styles ``eval.prompt`` may name (the
    first is the default).

    What it produces, declared so that reporting iterates over it and never names a method: ``metrics``, the
    accuracies (percent) it reports per set beside ``n`` and ``correct`` (the first is the headline accuracy);
    ``row_fields``, the fields of its prediction rows (every row has them), in the order a sample table shows them.
    """

    name: str
    evaluate_set: Callable
    check: Callable
    extra: Callable[[Mapping], int]
    domains: tuple[str, ...]
    prompts: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ("accuracy",)
    row_fields: tuple[str, ...] = ("id", "extracted", "answer", "correct")


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise RuntimeError(f"evaluation method '{method.name}' registered twice")
    METHODS[method.name] = method
    return method


def method(name: str) -> Method:
    """The record of ``eval.method``; an unknown one is a one-line ConfigError naming the known ones."""
    if name not in METHODS:
        raise ConfigError(f"eval.method must be one of {', '.join(sorted(METHODS))} (got '{name}')")
    return METHODS[name]
