"""Answer extraction and scoring, as the paper's evaluation scripts did it, with the fixed protocol's mended rules.

Every rule reads the response text (``prompts.response_text`` of a generation):

- numbers (evaluate.py): thousands separators removed, the last number; right when within 0.001 of the label; no
  number is wrong;
- option letters, ``first_capital`` (evaluate.py on AQuA): the first capital A–E anywhere, so "Answer", "Each" or
  "Bob" already count as a choice; ``option`` (fixed protocol): the letter of the last "(X)" the response names,
  else the letter after "answer is", else none;
- label words (commonsense_evaluate.py): the first occurrence of any of the task's lowercase label words.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from llm_adapters.data.sets import EvalSet
from llm_adapters.data.templates import response_text
from llm_adapters.intervals import wilson

_NUMBER = re.compile(r"-?\d+\.?\d*")
_CAPITAL = re.compile(r"[A-E]")
_OPTION = re.compile(r"\(([A-E])\)")
_ANSWER_IS = re.compile(r"answer is:?\s*\(?([A-E])\b")
CHOICE_RULES = ("first_capital", "option")


def extract_number(text: str) -> float | None:
    """The last number in the text after removing thousands separators; ``None`` when there is none
    (evaluate.py returned +inf, which no label equals)."""
    numbers = _NUMBER.findall(text.replace(",", ""))
    return float(numbers[-1]) if numbers else None


def number_correct(prediction: float | None, answer: str) -> bool:
    """Right when within 0.001 of the numeric label, as evaluate.py compared them."""
    return prediction is not None and abs(float(answer) - prediction) <= 0.001


def extract_choice(text: str, rule: str) -> str | None:
    """An option letter by the paper's ``first_capital`` rule or the fixed protocol's ``option`` rule."""
    if rule == "first_capital":
        match = _CAPITAL.search(text.strip())
        return match.group() if match else None
    if rule == "option":
        for pattern in (_OPTION, _ANSWER_IS):
            letters = pattern.findall(text)
            if letters:
                return letters[-1]
        return None
    raise ValueError(f"protocol.choice_extraction must be one of {', '.join(CHOICE_RULES)} (got '{rule}')")


def extract_label(text: str, labels: tuple[str, ...]) -> str | None:
    """The first label word in the text (case-sensitive, as commonsense_evaluate.py searched)."""
    match = re.search("|".join(map(re.escape, labels)), text.strip())
    return match.group() if match else None


def extract(text: str, spec: EvalSet, protocol: Mapping) -> str | float | None:
    """The prediction in a response, by the rule of the set's answer kind."""
    if spec.answer == "number":
        return extract_number(text)
    if spec.answer == "choice":
        return extract_choice(text, protocol["choice_extraction"])
    return extract_label(text, spec.labels)


def is_correct(prediction: str | float | None, answer: str, spec: EvalSet) -> bool:
    """Whether a prediction matches the gold answer under the set's rule."""
    if spec.answer == "number":
        return number_correct(prediction, answer)  # type: ignore[arg-type]
    return prediction is not None and prediction == answer


def score(
    generations: list[str], answers: list[str], spec: EvalSet, protocol: Mapping
) -> tuple[dict[str, float], list[dict[str, object]]]:
    """Accuracy (percent), n, correct count and its 95% interval over the questions (Wilson, ``intervals``), plus
    one row per generation with what was extracted."""
    rows: list[dict[str, object]] = []
    for generation, answer in zip(generations, answers, strict=True):
        prediction = extract(response_text(generation), spec, protocol)
        rows.append(
            {
                "generation": generation,
                "extracted": prediction,
                "answer": answer,
                "correct": is_correct(prediction, answer, spec),
            }
        )
    correct = sum(bool(row["correct"]) for row in rows)
    metrics = {"accuracy": 100.0 * correct / len(rows) if rows else 0.0, "n": len(rows), "correct": correct}
    return {**metrics, "interval": wilson(correct, len(rows))}, rows
