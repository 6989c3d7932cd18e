"""``eval.method=loglik``: multiple choice by log-likelihood, lm-evaluation-harness's way, on the commonsense sets.

A question is one (context, continuation) pair per option it offers, the options read from the record's own
``Answer format: answer1/answer2/...`` line (every record of every commonsense file beside the repo has one naming
its gold answer: tested), in one of four prompt styles (``eval.prompt``):

- ``paper`` (the default): the paper's evaluation prompt, each continuation the response the commonsense training
  data teaches for that option (``the correct answer is answer2``): what a model fine-tuned here learnt to say;
- ``paper_text``: the paper's prompt, each continuation naming the option's text (``the correct answer is
  breathing mask``): what a model trained with ``dataset.answer_format=text`` learnt to say (``data.options``);
- ``paper_cloze``: the same continuations after the paper's prompt of an instruction without its options
  (``dataset.answer_format=cloze``'s training prompts);
- ``lm_eval``: lm-evaluation-harness 0.4's zero-shot formats, the option texts as continuations
  (``lm_eval_prompts``): what a model that was never taught the labels can be measured with.

A continuation's score is the sum of its tokens' log-probabilities after its context (``likelihood_batches``);
``acc`` takes the highest, ``acc_norm`` the highest per character of the continuation (lm-eval's definitions). As
lm-eval does, whitespace that ends the context is moved to the front of the continuation.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from llm_adapters.adapters import set_adapter_dropout
from llm_adapters.data.options import cloze_instruction, option_text
from llm_adapters.data.sets import EvalSet, Record
from llm_adapters.data.templates import evaluation_prompt
from llm_adapters.errors import ConfigError, DataError
from llm_adapters.evaluation.likelihood_batches import encode, loglikelihoods
from llm_adapters.evaluation.lm_eval_prompts import lm_eval_pairs
from llm_adapters.evaluation.methods import Method, register
from llm_adapters.stats.intervals import wilson

ANSWER_FORMAT = re.compile(r"Answer format: ([\w/]+)\s*$")


def options(spec: EvalSet, record: Record, index: int) -> list[str]:
    """The option labels a record offers, from its ``Answer format:`` line; a record without one, with a single
    option, or whose gold answer is not among them is one line naming the set and the record."""
    found = ANSWER_FORMAT.search(record["instruction"])
    labels = found.group(1).split("/") if found else []
    if len(labels) < 2 or record["answer"] not in labels:
        why = "no 'Answer format: a/b/...' line" if not found else f"options {labels} (answer '{record['answer']}')"
        raise DataError(f"{spec.name} record {index}: {why}: scoring by option needs two or more options")
    return labels


def pairs(spec: EvalSet, record: Record, index: int, labels: list[str], cfg: Mapping) -> list[tuple[str, str]]:
    """(context, continuation) per option, in the prompt style ``eval.prompt`` names."""
    style = cfg.get("prompt") or "paper"
    if style in ("paper_text", "paper_cloze"):
        texts = [option_text(spec.name, record, index, label) for label in labels]
        if style == "paper_cloze":  # the instruction without its options, as answer_format=cloze trains
            record = {**record, "instruction": cloze_instruction(spec.name, record, index)}
        return request(record, texts)
    return lm_eval_pairs(spec, record, index, labels) if style == "lm_eval" else request(record, labels)


def request(record: Record, labels: Sequence[str]) -> list[tuple[str, str]]:
    """The paper's prompt: (context, continuation) per option, the context's trailing whitespace moved onto every
    continuation (as lm-eval moves it)."""
    prompt = evaluation_prompt(record["instruction"])
    context = prompt.rstrip()
    return [(context, prompt[len(context) :] + f"the correct answer is {label}") for label in labels]


def evaluate_set(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: EvalSet,
    records: Sequence[Record],
    cfg: Mapping,
    protocol: Mapping,
    device: torch.device,
    desc: str = "eval",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``acc`` (``accuracy``) and ``acc_norm`` (``accuracy_norm``) on one set, with intervals; one row per question
    with every option's log-probability, token and character count, the chosen options and the gold one."""
    start = time.perf_counter()
    model.eval()
    set_adapter_dropout(model, active=False)  # a likelihood is a property of the model, not of a dropout draw
    labels = [options(spec, r, i) for i, r in enumerate(records)]
    requests = [pairs(spec, r, i, ls, cfg) for i, (r, ls) in enumerate(zip(records, labels, strict=True))]
    found = loglikelihoods(model, tokenizer, requests, cfg, device, desc=f"{desc} {spec.name}")
    rows = []
    for index, (record, ls, options_pairs, (logprobs, tokens)) in enumerate(
        zip(records, labels, requests, found, strict=True)
    ):
        chars = [len(continuation) for _, continuation in options_pairs]
        chosen = ls[max(range(len(ls)), key=lambda k: logprobs[k])]
        normed = ls[max(range(len(ls)), key=lambda k: logprobs[k] / chars[k])]
        rows.append(
            {"id": f"{spec.name}/{index}", "prompt": options_pairs[0][0], "options": ls, "logprobs": logprobs}
            | {"tokens": tokens, "chars": chars, "extracted": chosen, "extracted_norm": normed}
            | {
                "answer": record["answer"],
                "correct": chosen == record["answer"],
                "correct_norm": normed == record["answer"],
            }
        )
    correct, correct_norm, n = sum(r["correct"] for r in rows), sum(r["correct_norm"] for r in rows), len(rows)
    metrics: dict[str, Any] = {
        "accuracy": 100.0 * correct / n if n else 0.0,
        "n": n,
        "correct": correct,
        "interval": wilson(correct, n),
        "accuracy_norm": 100.0 * correct_norm / n if n else 0.0,
        "correct_norm": correct_norm,
        "interval_norm": wilson(correct_norm, n),
    }
    if rows:
        top, count = Counter(r["extracted"] for r in rows).most_common(1)[0]
        metrics["top_answer"], metrics["top_answer_pct"] = top, 100.0 * count / n
    metrics["seconds"] = time.perf_counter() - start
    return metrics, rows


def check(
    spec: EvalSet, records: Sequence[Record], config: Any, tokenizer: PreTrainedTokenizerBase, extra: int, cfg: Mapping
) -> None:
    """Before any training: every record's options parse, and its longest context + continuation (+ virtual
    tokens) fits the model's context."""
    limit = getattr(config, "max_position_embeddings", None)
    for index, record in enumerate(records):
        found = pairs(spec, record, index, options(spec, record, index), cfg)
        if limit:
            longest = max(sum(len(t) for t in encode(tokenizer, c, o)) for c, o in found)
            if longest + extra > limit:
                raise ConfigError(
                    f"{spec.name} record {index}: its prompt and longest option ({longest} tokens) and {extra} "
                    f"virtual tokens exceed the model's context of {limit} tokens"
                )


register(
    Method(
        "loglik",
        evaluate_set,
        check,
        extra=lambda cfg: 0,
        domains=("commonsense",),
        prompts=("paper", "paper_text", "paper_cloze", "lm_eval"),
        metrics=("accuracy", "accuracy_norm"),  # lm-eval's acc and acc_norm
        row_fields=(
            *("id", "prompt", "options", "logprobs", "extracted", "extracted_norm", "answer", "correct"),
            "correct_norm",
        ),
    )
)
