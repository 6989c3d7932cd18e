"""The question and the option texts inside a commonsense record, and ``dataset.answer_format=text`` and ``cloze``.

The LLM-Adapters commonsense records hold a multiple-choice question in their instruction (``Please choose the
correct answer to the question: ...\\n\\nAnswer1: ... Answer2: ...\\n\\nAnswer format: answer1/answer2/...``) and
teach a label as the response (``the correct answer is answer2``). ``parsed`` reads the question and the option
texts back out (lm-eval's prompts are rebuilt from them); ``as_text`` rewrites a record's response to name the
gold option's text instead of its label (``the correct answer is breathing mask``). Why: to pick a label a model
must bind each option to its symbol, which models of a few hundred million parameters do at chance (the placement
pilots' finding: after 40 steps every SmolLM2 run gave one label to nearly every question, whatever the content);
saying the option's text asks only which text fits, which such models can already rank (zero-shot, lm-eval's
option-text scoring is above chance on ARC-Easy and PIQA). BoolQ's answers are their own texts (``true``/``false``)
and stay as they are. ``as_cloze`` also leaves the options out of the instruction (``dataset.answer_format=cloze``):
with every option written in the prompt, copying any of them is about equally likely, and the 200-step pilots
stayed at chance that way.
"""

from __future__ import annotations

import re

from llm_adapters.data.sets import Record
from llm_adapters.errors import DataError

_MARKER = re.compile(r"(?:Answer|Solution|Option|Ending)(\d+): ")
_END = re.compile(r"\s*(?:\n\n)?Answer format: [\w/]+\s*$")
_QUESTION = re.compile(r"^Please [^:]*?: (.*?)\n\n", re.S)
_LABEL = re.compile(r"^(?:answer|solution|option|ending)(\d+)$")
RESPONSE = "the correct answer is "  # the commonsense records' response before the answer (all 11 files)
ANSWER_FORMATS = ("label", "text", "cloze")
QUESTION = "Please choose the correct answer to the question: "  # the cloze instruction's opening (ARC, OBQA)


def parsed(name: str, record: Record, index: int) -> tuple[str, list[str]]:
    """(question, option texts in order) of a record of set or file ``name``; one line naming it and the record
    when it does not parse (BoolQ's records name no options: its list is empty)."""
    text = _END.sub("", record["instruction"])
    question = _QUESTION.match(text + "\n\n")
    parts = _MARKER.split(text)
    numbers, texts = parts[1::2], [t.strip() for t in parts[2::2]]
    if question is None or (
        name != "boolq" and (numbers != [str(i + 1) for i in range(len(texts))] or len(texts) < 2 or not all(texts))
    ):
        raise DataError(f"{name} record {index}: its question and options cannot be read")
    return question.group(1).strip(), texts


def option_text(name: str, record: Record, index: int, label: str) -> str:
    """The text of option ``label`` (``answer2`` → the second option's text); a label without a number (BoolQ's
    ``true``/``false``) is its own text."""
    number = _LABEL.match(label)
    if number is None:
        return label
    texts = parsed(name, record, index)[1]
    if not 1 <= int(number.group(1)) <= len(texts):
        raise DataError(f"{name} record {index}: answer '{label}' but {len(texts)} options")
    return texts[int(number.group(1)) - 1]


def as_text(name: str, record: Record, index: int) -> Record:
    """The record with its response naming its gold option's text instead of its label; one line naming the file
    and the record when the response is not the commonsense records' ``the correct answer is <label>``."""
    if record["output"] != RESPONSE + record["answer"]:
        raise DataError(
            f"{name} record {index}: dataset.answer_format=text or cloze needs the response '{RESPONSE}<answer>' "
            f"(got '{record['output'][:60]}')"
        )
    return {**record, "output": RESPONSE + option_text(name, record, index, record["answer"])}


def cloze_instruction(name: str, record: Record, index: int) -> str:
    """``answer_format=cloze``: the instruction without its options, so a response naming an option's text has to
    fit the question rather than copy one of the texts in the prompt (the cloze formulation lm-eval scores with).
    A record whose answers are their own texts (BoolQ's true/false) keeps its instruction."""
    if _LABEL.match(record["answer"]) is None:
        return record["instruction"]
    return QUESTION + parsed(name, record, index)[0]


def as_cloze(name: str, record: Record, index: int) -> Record:
    """The record in the cloze format: the options left out of the instruction, the response naming the gold
    option's text (as ``as_text``)."""
    return {**as_text(name, record, index), "instruction": cloze_instruction(name, record, index)}
