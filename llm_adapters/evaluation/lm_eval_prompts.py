"""``eval.prompt=lm_eval``: lm-evaluation-harness 0.4's zero-shot formats for the commonsense sets, rebuilt from the
LLM-Adapters records (whose instructions hold the question and the option texts).

The question and the option texts are read out of each record's instruction (``Answer1: ... Answer2: ...``,
``Solution1: ...``, ``Option1: ...``, ``Ending1: ...``: ``data.options.parsed``); a record that does not parse is one
line naming the set and the record. The formats, as lm-eval's task files write them (options continue after a space):

- ARC-Easy/Challenge, PIQA: ``Question: {question}\\nAnswer:`` and `` {option}``;
- OpenBookQA: the question stem, and `` {option}``;
- SIQA: ``Q: {context and question}\\nA:`` and `` {option}`` (the records join the context and the question);
- BoolQ: ``Question: {question}?\\nAnswer:`` and `` no``/`` yes`` (the records carry no passage: lm-eval puts it
  first, so this is lm-eval's format without the passage);
- WinoGrande: partial scoring — one context per option (the sentence up to the blank, the option in it) and one
  shared continuation (the rest of the sentence);
- HellaSwag: the sentence to complete and `` {ending}``, cleaned as lm-eval cleans them (``[title]`` and bracketed
  tags); lm-eval also puts the activity label first, which the records do not carry.
"""

from __future__ import annotations

import re

from llm_adapters.data.options import parsed
from llm_adapters.data.sets import EvalSet, Record
from llm_adapters.errors import DataError

LM_EVAL_SETS = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa")


def _hellaswag(text: str) -> str:
    """lm-eval's HellaSwag preprocessing: '[title]' becomes '. ', other bracketed tags go, double spaces close."""
    text = text.strip().replace(" [title]", ". ")
    return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def lm_eval_pairs(spec: EvalSet, record: Record, index: int, labels: list[str]) -> list[tuple[str, str]]:
    """(context, continuation) per option label, in the order of ``labels`` (option k is label k)."""
    if spec.name not in LM_EVAL_SETS:
        raise DataError(
            f"{spec.name}: eval.prompt=lm_eval has no format for this set (it has: {', '.join(LM_EVAL_SETS)})"
        )
    question, texts = parsed(spec.name, record, index)
    if spec.name == "boolq":
        asked = question.rstrip("?")  # lm-eval adds the question mark the records already carry
        return [(f"Question: {asked}?\nAnswer:", " yes" if label == "true" else " no") for label in labels]
    if len(texts) != len(labels):
        raise DataError(f"{spec.name} record {index}: {len(texts)} option texts for {len(labels)} options")
    if spec.name == "winogrande":
        if question.count("_") != 1:
            raise DataError(f"{spec.name} record {index}: the sentence has no single blank '_'")
        before, after = question.split("_")
        return [(before + option, " " + after.strip()) for option in texts]
    context = {
        "obqa": question,
        "siqa": f"Q: {question}\nA:",
        "hellaswag": _hellaswag(question),
    }.get(spec.name, f"Question: {question}\nAnswer:")
    return [(context, " " + (_hellaswag(t) if spec.name == "hellaswag" else t)) for t in texts]
