"""How sure an accuracy is over the test questions it was measured on: the 95% Wilson score interval of a binomial
proportion, in percent.

Wilson's rather than the normal approximation (lm-evaluation-harness's standard error): the test sets here are
often small (a CPU study scores 100 questions) and accuracies near 0% or 100% are common (a model that has not
learnt the answer format), where the normal interval leaves [0, 100] or collapses to a point; Wilson's stays inside
and keeps its coverage. scipy computes it (``binomtest(...).proportion_ci(method="wilson")``).
"""

from __future__ import annotations

CONFIDENCE = 0.95


def wilson(correct: int, n: int, confidence: float = CONFIDENCE) -> list[float] | None:
    """[low, high] in percent for ``correct`` of ``n`` (None when nothing was scored)."""
    if n <= 0:
        return None
    from scipy.stats import binomtest  # imported here: plan mode and the light commands never pay for scipy

    interval = binomtest(int(correct), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [100.0 * float(interval.low), 100.0 * float(interval.high)]
