"""Evaluation by generation: batched beam search with left padding and an attention mask, then the scoring rule.

Prompts are sorted by length before batching so a batch wastes little on padding; predictions come back in the
original order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from llm_adapters.prompts import evaluation_prompt, response_text
from llm_adapters.scoring import extract_number, number_correct


@torch.inference_mode()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    cfg: Mapping,
    device: torch.device,
    desc: str = "eval",
) -> list[str]:
    """The generated continuation of each prompt (special tokens dropped), in prompt order."""
    model.eval()
    model.config.use_cache = True
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    batch_size = int(cfg["batch_size"])
    outputs: list[str] = [""] * len(prompts)
    for first in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", dynamic_ncols=True):
        ids = order[first : first + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in ids]}, return_tensors="pt").to(device)
        generated = model.generate(
            **batch,
            do_sample=False,
            num_beams=int(cfg["num_beams"]),
            max_new_tokens=int(cfg["max_new_tokens"]),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new_tokens = generated[:, batch["input_ids"].shape[1] :]
        for i, text in zip(ids, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
            outputs[i] = text
    return outputs


def evaluate_math(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Mapping[str, str]],
    cfg: Mapping,
    device: torch.device,
    name: str,
) -> tuple[dict[str, float], list[dict[str, object]]]:
    """Accuracy (percent) on a numeric-answer set, and one prediction row per record."""
    start = time.perf_counter()
    prompts = [evaluation_prompt(r["instruction"]) for r in records]
    generations = generate(model, tokenizer, prompts, cfg, device, desc=f"eval {name}")
    rows = []
    for index, (record, prompt, generation) in enumerate(zip(records, prompts, generations, strict=True)):
        extracted = extract_number(response_text(generation))
        rows.append(
            {
                "id": f"{name}/{index}",
                "prompt": prompt,
                "generation": generation,
                "extracted": extracted,
                "answer": record["answer"],
                "correct": number_correct(extracted, record["answer"]),
            }
        )
    correct = sum(row["correct"] for row in rows)
    metrics = {
        "accuracy": 100.0 * correct / len(rows) if rows else 0.0,
        "n": len(rows),
        "correct": correct,
        "seconds": time.perf_counter() - start,
    }
    return metrics, rows
