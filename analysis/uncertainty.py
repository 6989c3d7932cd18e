"""Uncertainty of table cells and of differences between them, from every job's per-question scores.

A cell is the mean over its seeds of each seed's accuracy. Its 95% interval comes from a two-level bootstrap:
each replicate draws the test questions with replacement (once per set, shared by the cell's seeds: the questions
are the sample of the population of questions, the same for every seed) and the seeds with replacement, and takes
the mean; the interval is the 2.5th and 97.5th percentiles. With one seed it is a bootstrap over questions alone.

Two cells scored on the same questions are compared paired: the difference of their means, a 95% interval from the
same two-level bootstrap with each replicate's questions shared by both cells, and the p-value of the paired
permutation test (under the null hypothesis each question's two per-cell scores, each a mean over that cell's seeds,
are exchangeable: the sign of each question's difference is flipped). That test is computed exactly, over all 2^n
sign patterns, by convolving the per-question differences (integers once scaled by the two cells' seed counts): a
Monte Carlo test of 9,999 resamples cannot give a p-value below 1/10,000, so after Holm across a few hundred
comparisons (a study of 15 cells on 4 sets makes 420) nothing could be significant however large the difference.
With one seed a cell it is McNemar's exact test. On the average of several sets (each set weighted equally, as
the tables' Avg) the same test is taken in its normal form (``compare_average``). Across a study's comparisons the
p-values are adjusted by Holm's step-down method. Cells evaluated on different questions cannot be paired: they
are compared unpaired (questions resampled within each cell; scipy's Monte Carlo permutation test of the pooled
question scores).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPLICATES = 2000  # bootstrap replicates: the percentiles of a 95% interval move by ~0.1 point between seeds of the rng
PERMUTATIONS = 9999
ALPHA = 0.05


def prediction_rows(job_dir: Path) -> list[dict]:
    """The rows of a job's predictions.jsonl, or of its gzipped copy ``predictions.jsonl.gz`` (how a study commits
    predictions too large for the repository's 1 MiB a file); none when it has neither: an older result."""
    path = Path(job_dir) / "predictions.jsonl"
    packed = path.with_name("predictions.jsonl.gz")
    if path.is_file():
        text = path.read_text()
    elif packed.is_file():
        text = gzip.decompress(packed.read_bytes()).decode()
    else:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# A table's metric (its column prefix in the jobs frame) and the field of a prediction row that scores it.
METRICS = {"acc": "correct", "accn": "correct_norm"}  # accn: eval.method=loglik's acc_norm


def question_scores(job_dir: Path, metric: str = "acc") -> dict[str, dict[str, float]]:
    """Per evaluation set, each question's score (1 correct, 0 not) by its id, from the job's predictions.jsonl;
    empty when the job has none (an older result: its cells get intervals from the counts alone). Rows without the
    metric's field (generation has no acc_norm) are left out."""
    scores: dict[str, dict[str, float]] = {}
    field = METRICS[metric]
    for row in prediction_rows(job_dir):
        if field in row:
            name = str(row["id"]).rsplit("/", 1)[0]
            scores.setdefault(name, {})[str(row["id"])] = float(bool(row[field]))
    return scores


@dataclass
class Cell:
    """The per-question scores of one table cell's seeds on one set: ``scores[seed, question]``, questions by id."""

    ids: list[str]
    scores: np.ndarray

    @classmethod
    def of(cls, per_seed: Sequence[Mapping[str, float]]) -> Cell | None:
        """The cell of several seeds' scores (by question id); None when a seed lacks per-question scores or the
        seeds were scored on different questions (then the counts are all there is)."""
        if not per_seed or any(not s for s in per_seed) or any(set(s) != set(per_seed[0]) for s in per_seed):
            return None
        ids = sorted(per_seed[0])
        return cls(ids, np.array([[s[i] for i in ids] for s in per_seed], dtype=np.float32))

    @property
    def mean(self) -> float:
        return 100.0 * float(self.scores.mean())

    def replicates(self, questions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The cell's mean accuracy (%) in each bootstrap replicate, for drawn question indices (replicates × n)."""
        seeds = rng.integers(0, len(self.scores), size=(len(questions), len(self.scores)))
        per_seed = self.scores[:, questions].mean(axis=2).T  # replicates × seeds: each seed on the drawn questions
        return 100.0 * np.take_along_axis(per_seed, seeds, axis=1).mean(axis=1)


def question_draws(n: int, rng: np.random.Generator) -> np.ndarray:
    """The question indices of every bootstrap replicate (replicates × n): one draw a set, shared by the cells a
    difference pairs."""
    return rng.integers(0, n, size=(REPLICATES, n))


def interval(cell: Cell, seed: int = 0) -> list[float]:
    """95% interval (%) of the cell's mean over questions and seeds."""
    rng = np.random.default_rng(seed)
    values = cell.replicates(question_draws(len(cell.ids), rng), rng)
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


@dataclass
class Comparison:
    """A − B: the difference of the means (points), its 95% interval, the p-value, and whether it was paired."""

    difference: float
    low: float
    high: float
    p: float
    paired: bool


def sign_flip_p(differences: np.ndarray) -> float:
    """The exact two-sided p-value of the paired permutation test of integer per-question differences: the share
    of the 2^n sign patterns whose sum is at least as far from 0 as the observed one. The questions with the same
    |difference| v contribute v·(2·Binomial(m, ½) − m) together, so the null distribution is one convolution per
    distinct value (one, a binomial, with one seed a cell; FFT where the arrays are long)."""
    from scipy.signal import fftconvolve
    from scipy.stats import binom

    d = np.abs(differences.astype(np.int64))
    values, counts = np.unique(d[d > 0], return_counts=True)
    distribution, offset = np.array([1.0]), 0  # distribution[i] is the probability of the sum i - offset
    for value, m in zip(values.tolist(), counts.tolist(), strict=True):
        kernel = np.zeros(2 * value * m + 1)
        kernel[:: 2 * value] = binom.pmf(np.arange(m + 1), m, 0.5)
        long = distribution.size * kernel.size > 4_000_000
        distribution = fftconvolve(distribution, kernel) if long else np.convolve(distribution, kernel)
        offset += value * m
    sums = np.abs(np.arange(distribution.size) - offset)
    observed = abs(int(differences.sum()))
    return float(min(1.0, np.clip(distribution, 0.0, None)[sums >= observed].sum()))


def compare(a: Cell, b: Cell, seed: int = 0) -> Comparison:
    """A − B, paired when both were scored on the same questions (see the module docstring)."""
    rng = np.random.default_rng(seed)
    x, y = a.scores.mean(axis=0), b.scores.mean(axis=0)
    if a.ids == b.ids:
        questions = question_draws(len(a.ids), rng)
        diffs = a.replicates(questions, rng) - b.replicates(questions, rng)
        # Each question's difference in units of 1 / (seeds of A × seeds of B): whole numbers for 0/1 scores.
        scaled = a.scores.sum(axis=0) * len(b.scores) - b.scores.sum(axis=0) * len(a.scores)
        p = sign_flip_p(np.rint(scaled))
    else:
        from scipy.stats import permutation_test

        mine, theirs = question_draws(len(a.ids), rng), question_draws(len(b.ids), rng)
        diffs = a.replicates(mine, rng) - b.replicates(theirs, rng)
        p = permutation_test(
            (x, y),
            lambda u, v, axis: np.mean(u, axis=axis) - np.mean(v, axis=axis),
            permutation_type="independent",
            n_resamples=PERMUTATIONS,
            vectorized=True,
            random_state=seed,
        ).pvalue
    low, high = np.percentile(diffs, [2.5, 97.5])
    return Comparison(a.mean - b.mean, float(low), float(high), float(p), a.ids == b.ids)


def compare_average(pairs: Sequence[tuple[Cell, Cell]], seed: int = 0) -> Comparison:
    """A − B on the average of several sets' accuracies, each set weighted equally (the tables' Avg), both cells
    scored on the same questions of every set. The interval: each set's paired two-level bootstrap, drawn
    independently per set (the sets are independent samples), averaged. The p-value: the paired sign-flip test of
    the weighted statistic T = Σ_s Σ_q d_q / n_s, whose null distribution has mean 0 and variance Σ_s Σ_q d_q² / n_s²
    exactly; sets of different sizes put T on no common lattice, so it is taken as normal, with a continuity
    correction of half the finest step T can take (a study's average has hundreds of discordant questions; where the
    sets are equal in size that is the exact test's lattice, and within 3% of it at 140 discordant questions:
    tested; `sign_flip_p` is exact for one set)."""
    if any(a.ids != b.ids for a, b in pairs):
        raise ValueError("an average is compared only over sets that both cells answered on the same questions")
    rng = np.random.default_rng(seed)
    diffs = np.zeros(REPLICATES)
    for a, b in pairs:
        questions = question_draws(len(a.ids), rng)
        diffs += (a.replicates(questions, rng) - b.replicates(questions, rng)) / len(pairs)
    p = average_sign_flip_p([a.scores.mean(axis=0).astype(np.float64) - b.scores.mean(axis=0) for a, b in pairs])
    low, high = np.percentile(diffs, [2.5, 97.5])
    difference = float(np.mean([a.mean - b.mean for a, b in pairs]))
    return Comparison(difference, float(low), float(high), p, True)


def average_sign_flip_p(per_set: Sequence[np.ndarray]) -> float:
    """The normal form of the paired sign-flip test of T = Σ_s Σ_q d_q / n_s, from each set's per-question
    differences (``compare_average``'s docstring says why normal and which continuity correction)."""
    from scipy.stats import norm

    statistic, variance, half_step = 0.0, 0.0, np.inf
    for d in per_set:
        statistic += float(d.sum()) / d.size
        variance += float((d**2).sum()) / d.size**2
        if (nonzero := np.abs(d[d != 0])).size:
            half_step = min(half_step, float(nonzero.min()) / d.size)
    corrected = max(0.0, abs(statistic) - half_step) if variance else 0.0
    return 1.0 if variance == 0 else min(1.0, float(2 * norm.sf(corrected / np.sqrt(variance))))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest of m p-values times (m − i), made monotone, capped at 1."""
    order = np.argsort(pvalues, kind="stable")
    adjusted, running = np.empty(len(pvalues)), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * float(pvalues[index])))
        adjusted[index] = running
    return adjusted.tolist()
