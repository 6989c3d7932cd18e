"""From records to training tensors, the way the paper's finetune.py did it.

Each record becomes the training prompt with its output, truncated to ``cutoff_len`` tokens, with EOS appended when
there is room; labels are the input ids (loss on the prompt too, as the paper trained) unless ``train_on_inputs``
is off, which masks the tokens of the prompt without its output. Batches are padded on the left to a multiple of
8, as the paper's DataCollatorForSeq2Seq did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from transformers import PreTrainedTokenizerBase

from llm_adapters.prompts import training_prompt

IGNORE_INDEX = -100


def tokenize_for_training(
    records: Sequence[Mapping[str, str]],
    tokenizer: PreTrainedTokenizerBase,
    cutoff_len: int,
    train_on_inputs: bool,
) -> list[dict[str, list[int]]]:
    """``input_ids`` and ``labels`` per record."""
    eos = tokenizer.eos_token_id
    examples = []
    for record in records:
        ids = tokenizer(
            training_prompt(record["instruction"], record["output"]), truncation=True, max_length=cutoff_len
        )["input_ids"]
        if ids[-1] != eos and len(ids) < cutoff_len:
            ids.append(eos)
        labels = list(ids)
        if not train_on_inputs:
            prompt_len = len(
                tokenizer(training_prompt(record["instruction"]), truncation=True, max_length=cutoff_len)["input_ids"]
            )
            labels[:prompt_len] = [IGNORE_INDEX] * min(prompt_len, len(labels))
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def collate(batch: Sequence[Mapping[str, list[int]]], pad_id: int, multiple_of: int = 8) -> dict[str, torch.Tensor]:
    """Left-pad a micro-batch to the longest sequence rounded up to ``multiple_of``."""
    longest = max(len(ex["input_ids"]) for ex in batch)
    width = -(-longest // multiple_of) * multiple_of
    input_ids, labels, mask = [], [], []
    for ex in batch:
        pad = width - len(ex["input_ids"])
        input_ids.append([pad_id] * pad + ex["input_ids"])
        labels.append([IGNORE_INDEX] * pad + ex["labels"])
        mask.append([0] * pad + [1] * len(ex["input_ids"]))
    return {
        "input_ids": torch.tensor(input_ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


def grouped_by_length(order: list[int], lengths: list[int], batch_size: int, megabatches: int = 50) -> list[int]:
    """A shuffled order rearranged so each batch holds examples of similar length (less padding): the shuffled
    order is cut into runs of ``megabatches`` batches and each run sorted by length, longest first — the HF
    Trainer's ``group_by_length``. Which examples share an epoch is unchanged, only their grouping."""
    size = batch_size * megabatches
    return [
        i
        for start in range(0, len(order), size)
        for i in sorted(order[start : start + size], key=lambda i: -lengths[i])
    ]
