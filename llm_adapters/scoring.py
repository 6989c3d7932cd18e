"""Answer extraction and scoring rules, as the paper's evaluate.py applied them."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d+\.?\d*")


def extract_number(text: str) -> float | None:
    """The last number in the text after removing thousands separators; ``None`` when there is none
    (evaluate.py returned +inf, which no label equals)."""
    numbers = _NUMBER.findall(text.replace(",", ""))
    return float(numbers[-1]) if numbers else None


def number_correct(prediction: float | None, answer: str) -> bool:
    """Right when within 0.001 of the numeric label, as evaluate.py compared them."""
    return prediction is not None and abs(float(answer) - prediction) <= 0.001
