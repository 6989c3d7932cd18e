"""A built-in generator of arithmetic word problems in the LLM-Adapters record format.

It stands in for Math10K where no data can be downloaded: MAWPS/AddSub-like templates with one or two steps, each
record ``{"instruction", "input": "", "output", "answer"}`` whose ``output`` is a short rationale ending
"The answer is N." exactly like the Math10K rationales. Everything is drawn from one ``random.Random(seed)``, so the
same seed gives the same records on every machine.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from llm_adapters.data.sets import Record

_NAMES = ["Tom", "Sara", "Ali", "Mia", "Ben", "Lena", "Omar", "Kate", "Ravi", "Nora", "Sam", "Eva"]
_ITEMS = ["apples", "pencils", "marbles", "stickers", "books", "cookies", "shells", "cards", "coins", "flowers"]


def _add(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(2, 30), rng.randint(2, 30)
    question = f"{name} has {a} {item}. {name} buys {b} more {item}. How many {item} does {name} have now?"
    rationale = f"{name} starts with {a} {item} and buys {b} more, so {a} + {b} = {a + b}."
    return question, rationale, a + b


def _sub(rng: random.Random) -> tuple[str, str, int]:
    name, other, item = *rng.sample(_NAMES, 2), rng.choice(_ITEMS)
    b = rng.randint(2, 20)
    a = b + rng.randint(1, 20)
    question = f"{name} had {a} {item}. {name} gave {b} {item} to {other}. How many {item} does {name} have left?"
    rationale = f"{name} had {a} {item} and gave away {b}, so {a} - {b} = {a - b}."
    return question, rationale, a - b


def _total(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(2, 30), rng.randint(2, 30)
    question = (
        f"{name} picked {a} {item} on Monday and {b} {item} on Tuesday. How many {item} did {name} pick in total?"
    )
    rationale = f"{name} picked {a} and then {b} {item}, so {a} + {b} = {a + b}."
    return question, rationale, a + b


def _mul(rng: random.Random) -> tuple[str, str, int]:
    item = rng.choice(_ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    question = f"There are {a} boxes. Each box holds {b} {item}. How many {item} are there in all?"
    rationale = f"There are {a} boxes with {b} {item} each, so {a} * {b} = {a * b}."
    return question, rationale, a * b


def _div(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    bags, each = rng.randint(2, 9), rng.randint(2, 9)
    total = bags * each
    question = f"{name} puts {total} {item} equally into {bags} bags. How many {item} are in each bag?"
    rationale = f"{total} {item} shared by {bags} bags is {total} / {bags} = {each}."
    return question, rationale, each


def _add_sub(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(2, 20), rng.randint(2, 20)
    c = rng.randint(1, a + b - 1)
    question = f"{name} had {a} {item}. {name} found {b} more and then lost {c}. How many {item} does {name} have now?"
    rationale = f"First {a} + {b} = {a + b}. Then {a + b} - {c} = {a + b - c}."
    return question, rationale, a + b - c


def _mul_add(rng: random.Random) -> tuple[str, str, int]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    packs, each, had = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 20)
    question = (
        f"{name} buys {packs} packs of {item} with {each} in each pack. {name} already had {had}. "
        f"How many {item} does {name} have in total?"
    )
    rationale = f"The packs hold {packs} * {each} = {packs * each}. Then {packs * each} + {had} = {packs * each + had}."
    return question, rationale, packs * each + had


def _mul_sub(rng: random.Random) -> tuple[str, str, int]:
    name = rng.choice(_NAMES)
    wage, days = rng.randint(2, 9), rng.randint(2, 9)
    spent = rng.randint(1, wage * days - 1)
    question = (
        f"{name} earns {wage} dollars a day for {days} days and spends {spent} dollars. "
        f"How many dollars does {name} have left?"
    )
    earned = wage * days
    rationale = f"{name} earns {wage} * {days} = {earned} dollars. Then {earned} - {spent} = {earned - spent}."
    return question, rationale, earned - spent


ONE_STEP: tuple[Callable[[random.Random], tuple[str, str, int]], ...] = (_add, _sub, _total, _mul, _div)
TWO_STEP: tuple[Callable[[random.Random], tuple[str, str, int]], ...] = (_add_sub, _mul_add, _mul_sub)


def _records(rng: random.Random, two_step_fraction: float) -> Iterator[Record]:
    while True:
        templates = TWO_STEP if rng.random() < two_step_fraction else ONE_STEP
        question, rationale, answer = rng.choice(templates)(rng)
        yield {
            "instruction": question,
            "input": "",
            "output": f"\nA: {rationale} The answer is {answer}.",
            "answer": str(answer),
        }


def generate(
    train_size: int, test_size: int, seed: int, two_step_fraction: float = 0.3
) -> tuple[list[Record], list[Record]]:
    """Disjoint train and test splits: no test instruction appears in the training split (nor twice in its split)."""
    if train_size < 1 or test_size < 0:
        raise ValueError(f"dataset sizes must be train_size >= 1, test_size >= 0 (got {train_size}, {test_size})")
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: list[list[Record]] = [[], []]
    records = _records(rng, two_step_fraction)
    for split, size in zip(splits, (train_size, test_size), strict=True):
        # The template space holds well over 100k distinct questions; the cap only guards against a request
        # for more distinct records than exist, which would otherwise loop forever.
        for _ in range(100 * size):
            if len(split) == size:
                break
            record = next(records)
            if record["instruction"] not in seen:
                seen.add(record["instruction"])
                split.append(record)
        if len(split) < size:
            raise ValueError(f"could not draw {size} distinct synthetic problems; ask for fewer")
    return splits[0], splits[1]
