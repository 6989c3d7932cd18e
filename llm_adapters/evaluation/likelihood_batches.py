"""The log-likelihoods of many (context, continuation) pairs, batched: each continuation's summed token
log-probability after its context, as lm-evaluation-harness computes it (the continuation's tokens are those of the
whole text after the context's), and its token count.

A question whose options share one context is computed once with the leading tokens its options share (for the
paper's prompt all of "the correct answer is answer"): a left-padded batch fills a KV cache and scores those shared
tokens, and each option then costs only its own tokens on its question's cache rows (nothing more when they differ in
one token). Questions whose options have contexts of their own (WinoGrande's partial scoring) and adapters that put
virtual tokens into the cache (prefix and prompt tuning) score every option as a whole left-padded sequence. Both
give the numbers of a plain one-option-at-a-time forward pass (tested).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase

from llm_adapters.adapters import carries_virtual_tokens
from llm_adapters.model.architectures import cache_argument
from llm_adapters.model.loading import autocast

Pairs = Sequence[tuple[str, str]]  # one question: (context, continuation) per option


def encode(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of the context, and of the continuation as the whole text's tokens after the context's."""
    context_ids = tokenizer(context)["input_ids"]
    return context_ids, tokenizer(context + continuation)["input_ids"][len(context_ids) :]


def _positions(model: PreTrainedModel, mask: torch.Tensor, offset: torch.Tensor | None = None) -> dict[str, Any]:
    """Positions counted over the real tokens (left padding skipped), for a model that takes them."""
    if "position_ids" not in inspect.signature(model.forward).parameters:
        return {}
    if offset is not None:
        return {"position_ids": offset + torch.arange(mask.shape[1], device=mask.device)}
    return {"position_ids": (mask.long().cumsum(-1) - 1).clamp(min=0)}


def _whole(model: PreTrainedModel, pad: int, questions: list[list[tuple]], device) -> list[list[float]]:
    """Every option as one left-padded sequence (its context + continuation); its continuation's log-probability."""
    rows = [pair for pairs in questions for pair in pairs]
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
    return _regroup(scores, [[o for _, o in pairs] for pairs in questions])


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
    key = cache_argument(model)
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
    requests: Sequence[Pairs],
    cfg: Mapping,
    device: torch.device,
    desc: str = "loglik",
) -> list[tuple[list[float], list[int]]]:
    """Per question, each option's summed log-probability and token count; questions batched by length."""
    encoded = [[encode(tokenizer, c, o) for c, o in pairs] for pairs in requests]
    # Longest continuation first, then longest context: a batch pads its options to its longest one, so grouping by
    # the options' length pads least (1.3-1.6x the real tokens for lm_eval's option texts, against 1.5-2.9x sorted
    # by context alone; the paper prompt's options are all of one length, so its order is the contexts').
    order = sorted(
        range(len(encoded)),
        key=lambda i: (max(len(o) for _, o in encoded[i]), max(len(c) for c, _ in encoded[i])),
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[Any] = [None] * len(encoded)
    batch_size, virtual = int(cfg["batch_size"]), carries_virtual_tokens(model)
    with tqdm(total=len(encoded), desc=desc, unit="question", dynamic_ncols=True, disable=None) as bar:
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            shared = not virtual and all(len({tuple(c) for c, _ in encoded[i]}) == 1 for i in ids)
            with autocast(device, cfg.get("autocast")):
                if shared:
                    contexts, conts = [encoded[i][0][0] for i in ids], [[o for _, o in encoded[i]] for i in ids]
                    found = _shared(model, pad, contexts, conts, device)
                else:
                    found = _whole(model, pad, [encoded[i] for i in ids], device)
            for i, values in zip(ids, found, strict=True):
                out[i] = (values, [len(o) for _, o in encoded[i]])
            bar.update(len(ids))
    return out
