"""The interval every accuracy carries: Wilson's score interval, equal to its closed form, with the coverage it
promises, and shown wherever an accuracy is."""

import math

import numpy as np
import pytest

from llm_adapters.evaluation.scoring import score, score_text
from llm_adapters.job.tracking import wandb_summary
from llm_adapters.stats.intervals import wilson


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> list[float]:
    """Wilson (1927): (p + z²/2n ± z √(p(1-p)/n + z²/4n²)) / (1 + z²/n), in percent."""
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [100 * (centre - half) / (1 + z * z / n), 100 * (centre + half) / (1 + z * z / n)]


@pytest.mark.parametrize(("k", "n"), [(4, 100), (0, 100), (100, 100), (1, 2), (109, 254), (1319, 1319), (7, 9)])
def test_wilson_equals_its_wilson_by_hand(k, n):
    assert wilson(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-9)
    low, high = wilson(k, n)
    assert 0 <= low <= 100 * k / n <= high <= 100  # inside [0, 100], around the estimate, even at 0% and 100%


def test_nothing_scored_has_no_interval():
    assert wilson(0, 0) is None


def test_the_coverage_is_near_95_percent():
    """Over 4,000 simulated test sets of 100 questions at a true accuracy of 30%, the interval holds it about 95% of
    the time (binomial standard error of that rate: 0.34 points; the bound is 3 of them and Wilson's own slack)."""
    rng = np.random.default_rng(0)
    hits = [low <= 30 <= high for low, high in (wilson(int(k), 100) for k in rng.binomial(100, 0.3, 4000))]
    assert 0.93 <= np.mean(hits) <= 0.97


def test_every_accuracy_line_shows_it():
    from llm_adapters.data.sets import eval_set

    metrics, _ = score(["The answer is 8.", "The answer is 9."], ["8", "8"], eval_set("gsm8k"), {"name": "paper"})
    assert metrics["interval"] == wilson(1, 2)
    low, high = metrics["interval"]
    assert score_text(metrics) == f"50.0% (1/2) [{low:.1f}, {high:.1f}]"
    summary = wandb_summary({"status": "ok", "eval": {"gsm8k": metrics}})
    assert [summary["eval/gsm8k/interval_low"], summary["eval/gsm8k/interval_high"]] == metrics["interval"]
