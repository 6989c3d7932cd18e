"""From records to training tensors, the way the paper's finetune.py did it.

Each record becomes the training prompt with its output, truncated to ``cutoff_len`` tokens, with EOS appended when
there is room; labels are the input ids (loss on the prompt too, as the paper trained) unless ``train_on_inputs``
is off, which masks the tokens of the prompt without its output. Batches are padded on the left to a multiple of
8, as the paper's DataCollatorForSeq2Seq did.

The tokenized examples live in an Arrow table (``Examples``), not in Python lists: a 170k-record training set is
read row by row from a memory-mapped file (``arrow_cache.tokenized`` caches it), so no job holds the whole corpus
as objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, overload

import torch
from transformers import PreTrainedTokenizerBase

from llm_adapters.data.templates import training_prompt

if TYPE_CHECKING:
    from datasets import Dataset

IGNORE_INDEX = -100
COLUMNS = ("input_ids", "labels")


def tokenize_batch(
    batch: Mapping[str, Sequence[str]], tokenizer: PreTrainedTokenizerBase, cutoff_len: int, train_on_inputs: bool
) -> dict[str, list[Any]]:
    """``input_ids``, ``labels`` and ``length`` of a batch of records (``Dataset.map(batched=True)``); the same ids
    as tokenizing each record alone, since nothing is padded."""
    eos = tokenizer.eos_token_id
    texts = [training_prompt(i, o) for i, o in zip(batch["instruction"], batch["output"], strict=True)]
    all_ids = tokenizer(texts, truncation=True, max_length=cutoff_len)["input_ids"]
    if not train_on_inputs:
        prompts = [training_prompt(i) for i in batch["instruction"]]
        prompt_lens = [len(p) for p in tokenizer(prompts, truncation=True, max_length=cutoff_len)["input_ids"]]
    out: dict[str, list[Any]] = {"input_ids": [], "labels": [], "length": []}
    for index, ids in enumerate(all_ids):
        if ids and ids[-1] != eos and len(ids) < cutoff_len:
            ids.append(eos)
        labels = list(ids)
        if not train_on_inputs:
            masked = min(prompt_lens[index], len(labels))
            labels[:masked] = [IGNORE_INDEX] * masked
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["length"].append(len(ids))
    return out


class Examples(Sequence[dict[str, list[int]]]):
    """Tokenized examples, one row each (``input_ids``, ``labels``), read on demand from an Arrow table; a subset is
    a view of the same table (``select``), never a copy."""

    def __init__(self, table: Dataset) -> None:
        self.table = table

    def __len__(self) -> int:
        return self.table.num_rows

    @overload
    def __getitem__(self, index: int) -> dict[str, list[int]]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, list[int]]]: ...
    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self.rows(range(len(self))[index])
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        row = self.table[int(index) % len(self)]
        return {key: row[key] for key in COLUMNS}

    def rows(self, indices: Sequence[int]) -> list[dict[str, list[int]]]:
        """Several examples in one read of the table (a micro-batch)."""
        if not len(indices):
            return []
        columns = self.table[[int(i) for i in indices]]
        return [dict(zip(COLUMNS, pair, strict=True)) for pair in zip(*(columns[k] for k in COLUMNS), strict=True)]

    def lengths(self) -> list[int]:
        """Each example's token count (one small column read; no example is decoded)."""
        return self.table.select_columns(["length"]).with_format("numpy")[:]["length"].tolist()

    def select(self, indices: Sequence[int]) -> Examples:
        return Examples(self.table.select(indices))


def tokenize_for_training(
    records: Sequence[Mapping[str, str]] | Dataset,
    tokenizer: PreTrainedTokenizerBase,
    cutoff_len: int,
    train_on_inputs: bool,
) -> Examples:
    """The tokenized examples of ``records``, in memory (a job's training set goes through ``arrow_cache.tokenized``,
    which runs the same map into a cache shared by the jobs of a sweep)."""
    from datasets import Dataset

    table = records if isinstance(records, Dataset) else Dataset.from_list([dict(r) for r in records])
    return Examples(map_tokens(table, tokenizer, cutoff_len, train_on_inputs, keep_in_memory=True))


def map_tokens(
    table: Dataset, tokenizer: PreTrainedTokenizerBase, cutoff_len: int, train_on_inputs: bool, **options: Any
) -> Dataset:
    """``tokenize_batch`` over a table of records with ``Dataset.map``: a table of ``input_ids``, ``labels`` and
    ``length``."""
    from datasets import Features, Value
    from datasets import Sequence as ListOf

    return table.map(
        tokenize_batch,
        batched=True,
        batch_size=1000,
        remove_columns=table.column_names,
        features=Features({**{key: ListOf(Value("int32")) for key in COLUMNS}, "length": Value("int32")}),
        fn_kwargs={"tokenizer": tokenizer, "cutoff_len": cutoff_len, "train_on_inputs": train_on_inputs},
        desc="tokenize",
        **options,
    )


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
