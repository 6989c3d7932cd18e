"""Whether two studies of the same cells (two models, say) find the same difference between two cells
(``python -m analysis interaction FIRST SECOND [--by AXIS] [--sets A,B] [--out DIR]``).

"series@mlp beats series@attn on one model and not on the other" is a claim about the difference of two
differences, and it needs its own test: two comparisons, one significant and one not, do not make a significant
disagreement. For each pair of cells both studies compare (the same labels, ``compare.pairs``) on each set both
scored on the same questions, the contrast is (A − B in the first study) − (A − B in the second). Its interval is
the two-level bootstrap of ``uncertainty``, each replicate's questions shared by all four cells (the studies scored
the same questions: that pairing is what makes the contrast precise); its p-value is the exact paired sign-flip test
of the per-question contrasts (under the null the two studies' per-question differences are exchangeable), in its
normal form on the average of the sets, as ``compare_average``. Holm across all the rows, averages included."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.compare import AVERAGE, CompareError, Pair, adjusted, pairs
from analysis.uncertainty import ALPHA, REPLICATES, Cell, average_sign_flip_p, question_draws, sign_flip_p


def study_name(df: pd.DataFrame, directory: Path) -> str:
    """The study's model when it has one, else its directory's name: how the rows name the two studies."""
    models = df["model"].dropna().unique() if "model" in df else []
    return str(models[0]) if len(models) == 1 else directory.name


def _per_question(first: tuple[Cell, Cell], second: tuple[Cell, Cell]) -> np.ndarray:
    (a1, b1), (a2, b2) = first, second
    mean = [c.scores.mean(axis=0).astype(np.float64) for c in (a1, b1, a2, b2)]
    return (mean[0] - mean[1]) - (mean[2] - mean[3])


def _replicates(first: tuple[Cell, Cell], second: tuple[Cell, Cell], rng: np.random.Generator) -> np.ndarray:
    questions = question_draws(len(first[0].ids), rng)
    (a1, b1), (a2, b2) = first, second
    return (a1.replicates(questions, rng) - b1.replicates(questions, rng)) - (
        a2.replicates(questions, rng) - b2.replicates(questions, rng)
    )


def contrast(sets: list[tuple[tuple[Cell, Cell], tuple[Cell, Cell]]], seed: int = 0) -> dict[str, float]:
    """The contrast of one pair over one set (exact p) or the average of several (normal form): the first study's
    difference, the second's, their difference with its 95% interval, and the p-value."""
    rng = np.random.default_rng(seed)
    diffs = np.zeros(REPLICATES)
    for first, second in sets:
        diffs += _replicates(first, second, rng) / len(sets)
    per_question = [_per_question(first, second) for first, second in sets]
    if len(sets) == 1:
        scale = math.prod(len(c.scores) for c in (*sets[0][0], *sets[0][1]))  # each seed mean is k/n: whole numbers
        p = sign_flip_p(np.rint(per_question[0] * scale))
    else:
        p = average_sign_flip_p(per_question)
    low, high = np.percentile(diffs, [2.5, 97.5])
    first = float(np.mean([a.mean - b.mean for (a, b), _ in sets]))
    second = float(np.mean([a.mean - b.mean for _, (a, b) in sets]))
    return {"first": first, "second": second, "difference": first - second, "low": low, "high": high, "p": p}


def _matched(first: list[Pair], second: list[Pair]) -> list[tuple[Pair, Pair]]:
    """The pairs both studies compare, the second's turned to the first's order where it lists them the other way."""
    theirs = {(p.a, p.b): p for p in second} | {
        (p.b, p.a): Pair(p.b, p.a, {k: v[::-1] for k, v in p.cells.items()}) for p in second
    }
    return [(p, theirs[(p.a, p.b)]) for p in first if (p.a, p.b) in theirs]


def interactions(
    first: pd.DataFrame, second: pd.DataFrame, by: str | None = None, only: list[str] | None = None
) -> pd.DataFrame:
    """One row per (pair both studies compare, set): ``a``, ``b``, ``set``, ``first``, ``second`` (each study's
    A − B), ``difference`` (first − second), ``low``, ``high``, ``p``, ``p_holm``, ``significant``."""
    matched = _matched(pairs(first, by, only), pairs(second, by, only))
    if not matched:
        raise CompareError("the two studies compare no pair of cells with the same labels: nothing to contrast")
    rows = []
    for mine, theirs in matched:
        label, both = {"a": mine.a, "b": mine.b}, []
        for name, cells in mine.cells.items():
            if name not in theirs.cells:
                continue
            if any(c.ids != cells[0].ids for c in (cells[1], *theirs.cells[name])):
                raise CompareError(f"{mine.a} − {mine.b} on {name}: the studies scored different questions")
            both.append((cells, theirs.cells[name]))
            rows.append({**label, "set": name, **contrast([both[-1]])})
        if len(both) > 1:
            rows.append({**label, "set": AVERAGE, **contrast(both)})
    return adjusted(rows, "the pairs both studies compare share no set with per-question scores")


def write(found: pd.DataFrame, names: tuple[str, str], out: Path) -> list[str]:
    """interaction.csv and interaction.md (a line a row, then the table); returns the lines."""
    out.mkdir(parents=True, exist_ok=True)
    found.rename(columns={"first": names[0], "second": names[1]}).to_csv(out / "interaction.csv", index=False)
    lines = [
        f"{r['a']} − {r['b']} on {r['set']}: {names[0]} {r['first']:+.1f}, {names[1]} {r['second']:+.1f}; "
        f"difference {r['difference']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}], p_holm {r['p_holm']:.3g}"
        for _, r in found.iterrows()
    ]
    note = (
        f"Each pair's difference (A − B, points) in {names[0]} and in {names[1]}, and the difference of the two with "
        "its 95% bootstrap interval over questions and seeds; paired sign-flip p-values over the per-question "
        f"contrasts (exact on a set, normal on {AVERAGE}) Holm-adjusted across these {len(found)} rows; "
        f"significant: p_holm < {ALPHA}."
    )
    table = found.round({c: 2 for c in ("first", "second", "difference", "low", "high")} | {"p": 4, "p_holm": 4})
    body = table.rename(columns={"first": names[0], "second": names[1]}).to_markdown(index=False)
    (out / "interaction.md").write_text("\n".join([note, "", *[f"- {line}" for line in lines], "", body, ""]))
    return lines
