"""Answer extraction and scoring, as the paper's evaluation scripts did it, with the fixed protocol's mended rules.

Every rule reads the response text (``prompts.response_text`` of a generation):

- numbers (evaluate.py): thousands separators removed, the last number; right when within 0.001 of the label; no
  number is wrong;
- option letters, ``first_capital`` (evaluate.py on AQuA): the first capital A–E anywhere, so "Answer", "Each" or
  "Bob" already count as a choice; ``option`` (fixed protocol): the letter of the last "(X)" the response names,
  else the letter after "answer is", else none;
- label words (commonsense_evaluate.py): the first occurrence of any of the task's lowercase label words;
- option texts (``eval.prompt=paper_text``/``paper_cloze``, for models trained with ``dataset.answer_format=text`` or
  ``cloze``): the option whose text the response names (``extract_option_text``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from llm_adapters.data.sets import EvalSet
from llm_adapters.data.templates import response_text
from llm_adapters.stats.intervals import wilson

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


def _words(text: str, fold: bool) -> str:
    words = " ".join(text.split()).rstrip(" .")
    return words.lower() if fold else words


def extract_option_text(text: str, options: Mapping[str, str]) -> str | None:
    """The label of the option whose text the response names: the words after the last ``answer is`` (all of the
    response when it has none), spacing-blind, equal to an option's text or beginning with it at a word boundary
    (the longest: ``salt water, because ...`` names ``salt water``, not ``salt``). Compared as written first, then
    case-blind (``Salt water``); none when no option fits, or when two fit alike (ARC-Challenge's genotypes ``Rr``
    and ``rr`` told apart only by case, SIQA's options with one text twice)."""
    for fold in (False, True):
        answer = _words(re.split(r"answer is:?", text, flags=re.I)[-1], fold)
        fits = [
            (len(words), label)
            for label, option in options.items()
            if (words := _words(option, fold))
            and (answer == words or (answer.startswith(words) and not answer[len(words)].isalnum()))
        ]
        if fits:
            longest = max(fits)
            return longest[1] if [n for n, _ in fits].count(longest[0]) == 1 else None
    return None


def extract(
    text: str, spec: EvalSet, protocol: Mapping, options: Mapping[str, str] | None = None
) -> str | float | None:
    """The prediction in a response, by the rule of the set's answer kind, or the option text it names when the
    record's ``options`` (label → text) are given."""
    if options is not None:
        return extract_option_text(text, options)
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
    generations: list[str],
    answers: list[str],
    spec: EvalSet,
    protocol: Mapping,
    options: Sequence[Mapping[str, str]] | None = None,
) -> tuple[dict[str, float], list[dict[str, object]]]:
    """Accuracy (percent), n, correct count and its 95% interval over the questions (Wilson, ``intervals``), plus
    one row per generation with what was extracted; with ``options`` (per question, label → text), by the option
    text each response names."""
    rows: list[dict[str, object]] = []
    per_question = options if options is not None else [None] * len(generations)
    for generation, answer, offered in zip(generations, answers, per_question, strict=True):
        prediction = extract(response_text(generation), spec, protocol, offered)
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


def score_text(metrics: dict[str, Any]) -> str:
    """An accuracy with the counts behind it and its 95% interval over the questions, as every line that reports
    one shows it."""
    interval = metrics.get("interval")
    spread = f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else ""
    return f"{metrics['accuracy']:.1f}% ({metrics['correct']}/{metrics['n']}){spread}"
