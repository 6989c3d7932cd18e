"""``eval.method=generate``, the paper's protocol: batched beam search with left padding and an attention mask,
then the set's scoring rule (``scoring``), one prediction row per question with the generation and what was
extracted from it.

Prompts are sorted by length before batching so a batch wastes little on padding; predictions come back in the
original order. ``eval.prompt`` (commonsense sets): ``paper``, the default, reads a label from the response
(``scoring``); ``paper_text`` and ``paper_cloze`` read the option text it names, for models trained with
``dataset.answer_format=text`` or ``cloze`` (``paper_cloze`` prompts with the instruction less its options, as that
format trains): the generation cross-check of ``eval.method=loglik`` in the same styles. Two switches of the
protocol reproduce defects of the paper's scripts: adapter dropout left active while generating, and commonsense
batches generated without an attention mask (the padding is attended).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache, PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from llm_adapters.adapters import carries_virtual_tokens, set_adapter_dropout
from llm_adapters.data.options import cloze_instruction, option_text
from llm_adapters.data.sets import EvalSet, Record
from llm_adapters.data.templates import evaluation_prompt
from llm_adapters.errors import ConfigError
from llm_adapters.evaluation import beam_cache
from llm_adapters.evaluation.likelihood import options
from llm_adapters.evaluation.methods import Method, register
from llm_adapters.evaluation.scoring import score
from llm_adapters.model.architectures import cache_argument
from llm_adapters.model.loading import autocast

log = logging.getLogger(__name__)
TEXT_STYLES = ("paper_text", "paper_cloze")  # eval.prompt styles whose responses name an option's text


def prefill_once(
    model: PreTrainedModel, batch: Mapping[str, torch.Tensor], beams: int, new_tokens: int
) -> dict[str, Any]:
    """The prompts' KV cache (all but the last token), computed once per prompt and held once per beam.

    Beam search in transformers repeats every prompt once per beam before its first forward pass, so the prompt,
    the bulk of the work for the paper's long math prompts, is processed ``beams`` times. Handing generate the cache
    of one pass leaves it only the last prompt token to process per beam; the cache is a ``beam_cache`` one, which
    appends in place and reorders only the generated positions. Positions are numbered as generate numbers them
    (left padding skipped). Models whose adapter puts virtual tokens in the cache (prefix and prompt tuning) are left
    to generate's own prefill: their cache is longer than the prompt.
    """
    if beams == 1 or carries_virtual_tokens(model):
        return {}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    key = cache_argument(model)
    inputs = {"input_ids": ids[:, :-1], "attention_mask": mask[:, :-1], key: DynamicCache(config=model.config)}
    if "position_ids" in inspect.signature(model.forward).parameters:
        inputs["position_ids"] = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)[:, :-1]
    with torch.no_grad():
        model(**inputs, use_cache=True, logits_to_keep=1)
    return {key: beam_cache.for_beams(inputs[key], beams, room=new_tokens + 1)}


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    cfg: Mapping,
    device: torch.device,
    attention_mask: bool = True,
    desc: str = "eval",
    sort: bool = True,
) -> list[str]:
    """The generated continuation of each prompt (special tokens dropped), in prompt order.

    ``attention_mask=False`` hands generate an all-ones mask, so left padding is attended as in
    commonsense_evaluate.py, which passed only the input ids. ``sort=False`` batches consecutive prompts in their
    given order, as that script did (with the padding attended, which prompts share a batch changes the output).
    """
    model.config.use_cache = True
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i])) if sort else list(range(len(prompts)))
    batch_size = int(cfg["batch_size"])
    outputs: list[str] = [""] * len(prompts)
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", dynamic_ncols=True, disable=None)
    for first in range(0, len(order), batch_size):
        ids = order[first : first + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in ids]}, padding_side="left", return_tensors="pt")
        batch = batch.to(device)
        if not attention_mask:
            batch["attention_mask"] = torch.ones_like(batch["attention_mask"])
        with autocast(device, cfg.get("autocast")):
            generated = model.generate(
                **batch,
                **prefill_once(model, batch, int(cfg["num_beams"]), int(cfg["max_new_tokens"])),
                do_sample=False,
                num_beams=int(cfg["num_beams"]),
                max_new_tokens=int(cfg["max_new_tokens"]),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                stopping_criteria=StoppingCriteriaList([_TokenProgress(bar, int(cfg["max_new_tokens"]))]),
            )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        for i, text in zip(ids, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
            outputs[i] = text
        bar.update(len(ids))
    bar.close()
    return outputs


class _TokenProgress(StoppingCriteria):
    """Never stops anything: shows the token a batch has reached, so a long beam search shows progress inside a
    batch (a math batch of 256 new tokens takes minutes on a CPU)."""

    def __init__(self, bar: tqdm, limit: int) -> None:
        self.bar, self.limit, self.step = bar, limit, 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        self.step += 1
        self.bar.set_postfix_str(f"token {self.step}/{self.limit}", refresh=self.step % 8 == 0)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def evaluate_set(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: EvalSet,
    records: Sequence[Record],
    cfg: Mapping,
    protocol: Mapping,
    device: torch.device,
    desc: str = "eval",
) -> tuple[dict[str, float], list[dict[str, object]]]:
    """Accuracy on one evaluation set, and one prediction row per record."""
    start = time.perf_counter()
    model.eval()
    set_adapter_dropout(model, active=bool(protocol["eval_adapter_dropout"]))
    commonsense = spec.domain == "commonsense"
    mask = not commonsense or bool(protocol["commonsense_attention_mask"])
    sort = not (commonsense and protocol.get("commonsense_file_order"))
    prompts, offered = questions(spec, records, cfg)
    generations = generate(
        model, tokenizer, prompts, cfg, device, attention_mask=mask, desc=f"{desc} {spec.name}", sort=sort
    )
    metrics, scored = score(generations, [r["answer"] for r in records], spec, protocol, offered)
    # A model that gives one answer to everything scores that answer's share of the gold labels: the most frequent
    # extracted answer and how often it came show it (no answer extracted counts as an answer here).
    if scored:
        top, count = Counter(str(row["extracted"]) for row in scored).most_common(1)[0]
        metrics["top_answer"], metrics["top_answer_pct"] = top, 100.0 * count / len(scored)
    rows = [
        {"id": f"{spec.name}/{index}", "prompt": prompt, **row}
        for index, (prompt, row) in enumerate(zip(prompts, scored, strict=True))
    ]
    metrics["seconds"] = time.perf_counter() - start
    return metrics, rows


def questions(spec: EvalSet, records: Sequence[Record], cfg: Mapping) -> tuple[list[str], list[dict[str, str]] | None]:
    """The prompts in the style ``eval.prompt`` names, and for the option-text styles each record's options
    (label → text) to read its response by; a set without options is one line naming it, before training."""
    style = cfg.get("prompt") or "paper"
    if style not in TEXT_STYLES:
        return [evaluation_prompt(r["instruction"]) for r in records], None
    if spec.domain != "commonsense":
        raise ConfigError(f"eval.prompt={style} reads the option text a response names: {spec.name} has no options")
    offered = [
        {label: option_text(spec.name, r, i, label) for label in options(spec, r, i)} for i, r in enumerate(records)
    ]
    if style == "paper_cloze":
        records = [{**r, "instruction": cloze_instruction(spec.name, r, i)} for i, r in enumerate(records)]
    return [evaluation_prompt(r["instruction"]) for r in records], offered


def check(
    spec: EvalSet, records: Sequence[Record], config: Any, tokenizer: PreTrainedTokenizerBase, extra: int, cfg: Mapping
) -> None:
    """Refuse, with its set and record, a prompt that cannot fit the model's context together with ``extra`` more
    positions (the new tokens and the adapter's virtual tokens): found before training, not as a crash after it."""
    limit = getattr(config, "max_position_embeddings", None)
    prompts = questions(spec, records, cfg)[0]  # the options parse, the style fits the set
    ids = tokenizer(prompts)["input_ids"] if limit and records else []
    for index, tokens in enumerate(ids):
        if len(tokens) + extra > limit:
            raise ConfigError(
                f"{spec.name} record {index}: its prompt ({len(tokens)} tokens) and {extra} more (eval.max_new_tokens, "
                f"virtual tokens) exceed the model's context of {limit} tokens"
            )


register(
    Method(
        "generate",
        evaluate_set=evaluate_set,
        check=check,
        extra=lambda cfg: int(cfg["max_new_tokens"]),
        domains=("math", "commonsense"),
        prompts=("paper", *TEXT_STYLES),
        row_fields=("id", "prompt", "generation", "extracted", "answer", "correct"),
    )
)
