"""Power before running: the smallest paired difference between two cells of a study that its test questions and
seeds can detect, from stated assumptions, so a study is sized before it runs (``mode=plan`` on a sweep).

Two cells compared on the same n questions differ, per question, by d_q ∈ {−1, 0, +1}; the share of questions on
which two single runs disagree, ``disagreement`` (δ), bounds Var(d_q) ≤ δ, so the question part of the variance of
the difference is at most δ / n (kept whole with several seeds: conservative, as seed averaging only lowers it). A
cell's accuracy also moves from seed to seed by ``seed_sd`` points beyond question sampling, which k seeds per cell
cut to 2·seed_sd² / k for a difference. Over several sets the study's Avg weighs each set equally: its question part
is Σ δ / n_s / S². The minimum detectable difference at power 1 − β, two-sided α after Holm over m comparisons
(Holm's first step, the strictest, is Bonferroni's α / m), is (z_{1−α/2m} + z_{1−β}) · √(question part + seed part).
The defaults below are stated assumptions, each overridable (``+power.disagreement=0.3``).

m is the family the analysis adjusts: ``python -m analysis compare`` tests each pair of cells on every set and, with
two or more sets, on their average, and Holm-adjusts all those rows together, so m = pairs × (sets + 1); with
``+power.by=placement`` (as ``--by placement``) the pairs are those that differ in that config key alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

DEFAULTS = {
    "disagreement": 0.2,  # share of questions two runs of different cells answer differently (0.2: a guess to revise)
    "seed_sd": 1.0,  # points of accuracy a cell moves from seed to seed beyond question sampling
    "power": 0.8,
    "alpha": 0.05,
}


FAMILY = "by"  # not an assumption: the config key whose pairs are compared (None: every pair of cells)


def assumptions(given: Mapping | None) -> dict[str, float]:
    """The defaults with ``power.*`` overrides; an unknown key is refused (a typo would change nothing)."""
    given = {k: v for k, v in dict(given or {}).items() if k != FAMILY}
    if unknown := sorted(set(given) - set(DEFAULTS)):
        raise ValueError(f"power.{unknown[0]}: no such assumption (known: {', '.join([*DEFAULTS, FAMILY])})")
    return {**DEFAULTS, **{k: float(v) for k, v in given.items()}}


def family(given: Mapping | None) -> str | None:
    """``power.by``: the key the compared pairs differ in alone, as ``analysis compare --by``."""
    return (given or {}).get(FAMILY)


def family_size(pairs: int, sets: int) -> int:
    """The rows the analysis adjusts together: every pair on each set, and on their average where there are two."""
    return pairs * (sets + (1 if sets > 1 else 0))


def minimum_detectable(questions: Sequence[int], seeds: int, comparisons: int, given: Mapping | None = None) -> float:
    """The smallest true paired difference (points) detected with the assumed power (see the module docstring)."""
    from scipy.stats import norm

    a = assumptions(given)
    question_part = sum(a["disagreement"] / n for n in questions) / len(questions) ** 2 * 1e4
    seed_part = 2 * a["seed_sd"] ** 2 / seeds
    z = norm.ppf(1 - a["alpha"] / (2 * max(1, comparisons))) + norm.ppf(a["power"])
    return float(z * math.sqrt(question_part + seed_part))


def study_line(
    cells: int, pairs: int, seeds: int, questions: Mapping[str, int | None], given: Mapping | None = None
) -> str:
    """What ``mode=plan`` prints under a sweep's table: its cells, the pairs and tests between them, and the figure."""
    a, by = assumptions(given), family(given)
    if pairs < 1:
        return f"power: {cells} cell(s), no pair to compare" + (f" that differs in {by} alone" if by else "")
    unknown = [name for name, n in questions.items() if not n]
    if unknown:
        return (
            f"power: unknown number of test questions for {', '.join(unknown)} (set paths.data_dir or eval.max_samples)"
        )
    m = family_size(pairs, len(questions))
    figure = minimum_detectable(list(questions.values()), seeds, m, a)
    sizes = ", ".join(f"{name} {n}" for name, n in questions.items())
    which = f"pairs differing in {by} alone" if by else "pairs"
    return (
        f"power: {cells} cells x {seeds} seed(s), {pairs} {which} x {m // pairs} rows = {m} tests, questions {sizes}: "
        f"minimum detectable paired difference {figure:.1f} points on the average at {a['power']:.0%} power, alpha "
        f"{a['alpha']} after Holm (assumed disagreement {a['disagreement']}, seed sd {a['seed_sd']} points; "
        "+power.<key>=... to change, +power.by=<key> for the pairs of one axis)"
    )
