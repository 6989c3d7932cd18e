"""Each table cell's 95% interval and its standing in its column, from the per-question scores of its jobs.

A cell's interval accounts for the test questions and the seeds (``uncertainty``: the two-level bootstrap); the Avg
column's resamples every set's questions and averages. A cell whose jobs left no per-question rows (results older
than predictions.jsonl, or a W&B run) gets the Wilson interval of its pooled counts instead, and says so
(``basis``: ``counts``). In each column the highest cell is compared, paired, with every other (Holm across those
comparisons; for Avg a paired bootstrap p-value of the difference of the sets' mean): it is ``best`` (bold) only
when it is significantly better than the runner-up, and every cell that cannot be told from it is ``tied`` with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.uncertainty import ALPHA, Cell, compare, holm, interval, question_scores
from llm_adapters.stats.intervals import wilson


def _cells(group: pd.DataFrame, sets: Sequence[str], metric: str) -> dict[str, Cell | None]:
    scores = [question_scores(job, metric) for job in group["job"]] if "job" in group else []  # built by hand: none
    return {s: Cell.of([per_job.get(s, {}) for per_job in scores]) for s in sets}


def average(cells: Sequence[Cell], seed: int = 0) -> tuple[float, list[float]]:
    """The Avg column's mean and interval: each set's questions resampled on their own, the seeds once."""
    rng = np.random.default_rng(seed)
    values = np.mean([c.replicates(rng.integers(0, len(c.ids), size=(2000, len(c.ids))), rng) for c in cells], axis=0)
    return float(np.mean([c.mean for c in cells])), [
        float(np.percentile(values, 2.5)),
        float(np.percentile(values, 97.5)),
    ]


def statistics(
    grouped: pd.core.groupby.DataFrameGroupBy, sets: Sequence[str], metric: str = "acc"
) -> tuple[pd.DataFrame, dict]:
    """Per cell (in the groups' order): ``<col> low``, ``<col> high``, ``<col> n×k`` and ``basis`` for every set
    and Avg; and the cells themselves by column (None where only counts exist), for the column verdicts. ``metric``:
    ``acc``, or ``accn`` (acc_norm) for likelihood jobs."""
    rows, by_column = [], {c: [] for c in [*sets, "Avg"]}
    for _, group in grouped:
        cells, row = _cells(group, sets, metric), {}
        for s in sets:
            c, seeds = cells[s], len(group)
            n = group[f"n/{s}"] if f"n/{s}" in group else pd.Series([np.nan] * seeds)  # a table built by hand
            row[f"{s} low"], row[f"{s} high"] = np.nan, np.nan
            if c is not None:
                row[f"{s} low"], row[f"{s} high"] = interval(c)
            elif n.notna().all():
                correct = round(float((group[f"{metric}/{s}"] * n / 100).sum()))
                row[f"{s} low"], row[f"{s} high"] = wilson(correct, int(n.sum())) or [np.nan, np.nan]
            row[f"{s} n×k"] = f"{int(n.max()) if n.notna().any() else '?'} × {seeds}"
            by_column[s].append(c)
        present = [cells[s] for s in sets if cells[s] is not None]
        row["Avg low"], row["Avg high"] = average(present)[1] if len(present) == len(sets) else (np.nan, np.nan)
        if len(sets) == 1 and not present:  # one set from counts alone: its Avg is that set, and so is its interval
            row["Avg low"], row["Avg high"] = row[f"{sets[0]} low"], row[f"{sets[0]} high"]
        by_column["Avg"].append(present if len(present) == len(sets) else None)
        row["basis"] = "questions × seeds" if len(present) == len(sets) else "counts"
        rows.append(row)
    return pd.DataFrame(rows), by_column


def verdicts(means: Sequence[float], cells: Sequence[Cell | list[Cell] | None]) -> tuple[list[bool], list[bool]]:
    """(best, tied) per cell of one column: the top cell is ``best`` only when significantly better (paired, Holm)
    than the runner-up; the others are ``tied`` when they cannot be told from it."""
    order = [i for i in np.argsort(means)[::-1] if not np.isnan(means[i])]
    best, tied = [False] * len(means), [False] * len(means)
    top = order[0] if order else None
    if top is None or cells[top] is None or len(order) < 2:
        return best, tied
    others = [i for i in order[1:] if cells[i] is not None]
    pvalues = holm([_p(cells[top], cells[i]) for i in others]) if others else []
    adjusted = dict(zip(others, pvalues, strict=True))
    best[top] = order[1] in adjusted and adjusted[order[1]] < ALPHA
    for i, p in adjusted.items():
        tied[i] = p >= ALPHA
    return best, tied


def _p(a: Cell | list[Cell], b: Cell | list[Cell], seed: int = 0) -> float:
    """A column's p-value: one set's paired permutation test, or for Avg the two-sided bootstrap p-value of the
    difference of the sets' mean (each set's questions drawn once for both cells, as the cells' Avg weighs sets)."""
    if isinstance(a, Cell):
        return compare(a, b).p
    rng, diffs = np.random.default_rng(seed), 0.0
    for x, y in zip(a, b, strict=True):
        questions = rng.integers(0, len(x.ids), size=(2000, len(x.ids)))
        diffs = diffs + (x.replicates(questions, rng) - y.replicates(questions, rng)) / len(a)
    return float(min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))))
