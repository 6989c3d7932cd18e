"""``eval.method=loglik``: multiple choice by log-likelihood, lm-evaluation-harness's way, on the commonsense sets.

Each question is its context, the paper's evaluation prompt, and one continuation per option it offers: the
response the commonsense training data teaches for that option (``the correct answer is answer2``), the options
read from the record's own ``Answer format: answer1/answer2/...`` line (every record of every commonsense file
beside the repo has one naming its gold answer: tested). A continuation's score is the sum of its tokens'
log-probabilities after the context; ``acc`` takes the highest, ``acc_norm`` the highest per character of the
continuation (lm-eval's definitions). As lm-eval does, whitespace that ends the context is moved to the front of the
continuation, and the continuation's tokens are those of the whole text after the context's.

The context is computed once per question, with the leading tokens its options share (for the paper's prompt all of
"the correct answer is answer"): a left-padded batch fills a KV cache and scores those shared tokens, and each
option then costs only its own tokens on its question's cache rows (nothing more when they differ in one token). An
adapter that puts virtual tokens into the cache (prefix and prompt tuning) scores every option as a whole sequence
instead. Both give the numbers of a plain one-option-at-a-time forward pass (tested).
"""

from __future__ import annotations

import inspect
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from llm_adapters import beam_cache
from llm_adapters.adapters import carries_virtual_tokens, set_adapter_dropout
from llm_adapters.errors import ConfigError, DataError
from llm_adapters.evaluation.methods import Method, register
from llm_adapters.intervals import wilson
from llm_adapters.models import autocast
from llm_adapters.prompts import evaluation_prompt
from llm_adapters.records import EvalSet, Record

ANSWER_FORMAT = re.compile(r"Answer format: ([\w/]+)\s*$")


def options(spec: EvalSet, record: Record, index: int) -> list[str]:
    """The option labels a record offers, from its ``Answer format:`` line; a record without one, with a single
    option, or whose gold answer is not among them is one line naming the set and the record."""
    found = ANSWER_FORMAT.search(record["instruction"])
    labels = found.group(1).split("/") if found else []
    if len(labels) < 2 or record["answer"] not in labels:
        why = "no 'Answer format: a/b/...' line" if not found else f"options {labels} (answer '{record['answer']}')"
        raise DataError(f"{spec.name} record {index}: {why}: eval.method=loglik needs two or more options")
    return labels


def request(record: Record, labels: Sequence[str]) -> tuple[str, list[str]]:
    """(context, continuations), the context's trailing whitespace moved onto every continuation."""
    prompt = evaluation_prompt(record["instruction"])
    context = prompt.rstrip()
    return context, [prompt[len(context) :] + f"the correct answer is {label}" for label in labels]


def encode(tokenizer: PreTrainedTokenizerBase, context: str, continuations: Sequence[str]) -> tuple[list, list]:
    """Token ids of the context, and of each continuation as the whole text's tokens after the context's."""
    context_ids = tokenizer(context)["input_ids"]
    return context_ids, [tokenizer(context + c)["input_ids"][len(context_ids) :] for c in continuations]


def _positions(model: PreTrainedModel, mask: torch.Tensor, offset: torch.Tensor | None = None) -> dict[str, Any]:
    """Positions counted over the real tokens (left padding skipped), for a model that takes them."""
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return {}
    if offset is not None:
        return {"position_ids": offset + torch.arange(mask.shape[1], device=mask.device)}
    return {"position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}


def _whole(model: PreTrainedModel, pad: int, contexts: list, conts: list[list], device) -> list[list[float]]:
    """Every option as one left-padded sequence (context + continuation); its continuation's log-probability."""
    rows = [(c, o) for c, options in zip(contexts, conts, strict=True) for o in options]
    width = max(len(c) + len(o) for c, o in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (c, o) in enumerate(rows):
        ids[i, width - len(c) - len(o) :], mask[i, width - len(c) - len(o) :] = torch.tensor(c + o), 1
    ids, mask = ids.to(device), mask.to(device)
    keep = max(len(o) for _, o in rows) + 1
    logits = model(input_ids=ids, attention_mask=mask, **_positions(model, mask), logits_to_keep=keep).logits
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    scores = [
        float(logprobs[i, keep - 1 - len(o) :].gather(-1, ids[i, -len(o) :, None]).sum())
        for i, (_, o) in enumerate(rows)
    ]
    return _regroup(scores, conts)


def _common(options: list[list[int]]) -> int:
    """How many leading tokens all of a question's continuations share, leaving each at least one of its own."""
    shortest = min(len(o) for o in options) - 1
    return next((k for k in range(shortest) if len({o[k] for o in options}) > 1), max(shortest, 0))


def _shared(model: PreTrainedModel, pad: int, contexts: list, conts: list[list], device) -> list[list[float]]:
    """Each context once, with the leading tokens its options share ("the correct answer is answer"), in one
    left-padded batch that fills a KV cache and scores those shared tokens; then only each option's own tokens, on
    its question's cache rows (no second pass at all when every option differs in one token only)."""
    common = [_common(options) for options in conts]
    rows = [c + options[0][:k] for c, options, k in zip(contexts, conts, common, strict=True)]
    tails = [[o[k:] for o in options] for options, k in zip(conts, common, strict=True)]
    width, keep = max(len(r) for r in rows), max(common) + 1
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :], mask[i, width - len(r) :] = torch.tensor(r), 1
    ids, mask = ids.to(device), mask.to(device)
    key = beam_cache.cache_key(model)
    cache = DynamicCache(config=model.config)
    inputs = {"input_ids": ids, "attention_mask": mask, key: cache, **_positions(model, mask)}
    head = model(**inputs, use_cache=True, logits_to_keep=keep).logits.float().log_softmax(-1)
    shared = [
        float(head[i, keep - 1 - k : keep - 1].gather(-1, ids[i, width - k :, None]).sum()) if k else 0.0
        for i, k in enumerate(common)
    ]
    first = head[:, -1]  # what follows each row: the first token of every option's own part
    owner = torch.tensor([q for q, options in enumerate(tails) for _ in options], device=device)
    flat = [o for options in tails for o in options]
    length = max(len(o) for o in flat)
    later = None
    if length > 1:
        cache.reorder_cache(owner)  # each question's rows once per option
        cont = torch.full((len(flat), length), pad, dtype=torch.long, device=device)
        cont_mask = torch.zeros_like(cont)
        for i, o in enumerate(flat):
            cont[i, : len(o)], cont_mask[i, : len(o)] = torch.tensor(o), 1
        full_mask = torch.cat([mask[owner], cont_mask], dim=1)
        positions = _positions(model, cont_mask, mask[owner].sum(-1, keepdim=True))
        logits = model(input_ids=cont, attention_mask=full_mask, **positions, **{key: cache}).logits.float()
        later = torch.log_softmax(logits[:, :-1], dim=-1)
    scores = []
    for i, o in enumerate(flat):
        total = shared[int(owner[i])] + float(first[owner[i], o[0]])
        if len(o) > 1:
            total += float(later[i, : len(o) - 1].gather(-1, torch.tensor(o[1:], device=device)[:, None]).sum())
        scores.append(total)
    return _regroup(scores, conts)


def _regroup(scores: list[float], conts: list[list]) -> list[list[float]]:
    out, at = [], 0
    for options in conts:
        out.append(scores[at : at + len(options)])
        at += len(options)
    return out


@torch.inference_mode()
def loglikelihoods(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[tuple[str, list[str]]],
    cfg: Mapping,
    device: torch.device,
    desc: str = "loglik",
) -> list[tuple[list[float], list[int]]]:
    """Per request, each continuation's summed log-probability and token count; questions batched by length."""
    encoded = [encode(tokenizer, context, conts) for context, conts in requests]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    score = _whole if carries_virtual_tokens(model) else _shared
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[Any] = [None] * len(encoded)
    batch_size = int(cfg["batch_size"])
    with tqdm(total=len(encoded), desc=desc, unit="question", dynamic_ncols=True, disable=None) as bar:
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            with autocast(device, cfg.get("autocast")):
                found = score(model, pad, [encoded[i][0] for i in ids], [encoded[i][1] for i in ids], device)
            for i, values in zip(ids, found, strict=True):
                out[i] = (values, [len(o) for o in encoded[i][1]])
            bar.update(len(ids))
    return out


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
    requests = [request(r, ls) for r, ls in zip(records, labels, strict=True)]
    found = loglikelihoods(model, tokenizer, requests, cfg, device, desc=f"{desc} {spec.name}")
    rows = []
    for index, (record, ls, (context, conts), (logprobs, tokens)) in enumerate(
        zip(records, labels, requests, found, strict=True)
    ):
        chars = [len(c) for c in conts]
        chosen = ls[max(range(len(ls)), key=lambda k: logprobs[k])]
        normed = ls[max(range(len(ls)), key=lambda k: logprobs[k] / chars[k])]
        rows.append(
            {"id": f"{spec.name}/{index}", "prompt": context, "options": ls, "logprobs": logprobs, "tokens": tokens}
            | {"chars": chars, "extracted": chosen, "extracted_norm": normed, "answer": record["answer"]}
            | {"correct": chosen == record["answer"], "correct_norm": normed == record["answer"]}
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
    spec: EvalSet, records: Sequence[Record], config: Any, tokenizer: PreTrainedTokenizerBase, extra: int
) -> None:
    """Before any training: every record's options parse, and its longest context + continuation (+ virtual
    tokens) fits the model's context."""
    limit = getattr(config, "max_position_embeddings", None)
    for index, record in enumerate(records):
        context, conts = request(record, options(spec, record, index))
        if limit:
            context_ids, cont_ids = encode(tokenizer, context, conts)
            if len(context_ids) + max(len(c) for c in cont_ids) + extra > limit:
                raise ConfigError(
                    f"{spec.name} record {index}: its prompt and longest option ({len(context_ids)} + "
                    f"{max(len(c) for c in cont_ids)} tokens) and {extra} virtual tokens exceed the model's context "
                    f"of {limit} tokens"
                )


register(Method("loglik", evaluate_set=evaluate_set, check=check, extra=lambda cfg: 0, domains=("commonsense",)))
