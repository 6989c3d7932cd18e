"""The power a finished study had, measured from its own predictions, so a difference within noise is reported with
the difference the study could have seen (``python -m analysis power``).

Plan mode sizes a study from assumed figures (``llm_adapters.stats.power``: the share of questions two runs answer
differently, and a cell's spread from seed to seed). Once the jobs are done both are measured: the disagreement as
the mean, over the compared pairs, the shared sets and every pairing of one seed of each cell, of the share of
questions answered differently; the seed spread as the pooled standard deviation, across seeds, of each cell's
average over the sets (the same questions every seed, so it is the training's spread alone). The same formula then
gives the minimum detectable paired difference on the average at the study's seeds and Holm family, and its floor
with seeds without number (the question part alone: what only more questions can lower). Beside it, the figure the
comparisons' own bootstrap intervals imply: (z_{1-α/2m} + z_{1-β}) times each Avg row's standard error, their
median, the check that needs no formula."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.compare import AVERAGE, CompareError, comparisons, pairs
from analysis.uncertainty import Cell
from llm_adapters.stats.power import DEFAULTS, minimum_detectable

Z95 = 1.959963984540054  # the comparisons' intervals are 95%


@dataclass
class Measured:
    pairs: int
    questions: dict[str, int]
    seeds: int
    comparisons: int
    disagreement: float
    seed_sd: float
    minimum_detectable: float  # points on the average of the sets, at the assumed power after Holm
    floor: float  # the same with the seed part gone: what more seeds alone cannot lower
    from_intervals: float  # the median over pairs of z × the Avg row's bootstrap standard error
    largest_difference: float  # the largest |difference| observed on the average

    def line(self) -> str:
        sets = ", ".join(f"{name} {n}" for name, n in self.questions.items())
        return (
            f"measured power: {self.pairs} pairs on {len(self.questions)} sets, {self.comparisons} tests, "
            f"{self.seeds} seed(s), questions {sets}: disagreement {self.disagreement:.3f}, seed sd "
            f"{self.seed_sd:.2f} points -> minimum detectable difference on the average {self.minimum_detectable:.1f} "
            f"points at {DEFAULTS['power']:.0%} power after Holm (floor with unlimited seeds {self.floor:.1f}; from "
            f"the comparisons' intervals {self.from_intervals:.1f}); largest observed |difference| "
            f"{self.largest_difference:.1f}"
        )


def disagreement(a: Cell, b: Cell) -> float:
    """The share of questions one run of each cell answers differently, over every pairing of their seeds."""
    return float(np.mean([np.mean(x != y) for x in a.scores for y in b.scores]))


def seed_variance(cells: list[Cell]) -> float | None:
    """The variance across seeds (points², ddof 1) of one cell's mean accuracy over its sets; None for one seed."""
    per_seed = 100.0 * np.mean([cell.scores.mean(axis=1) for cell in cells], axis=0)
    return float(np.var(per_seed, ddof=1)) if len(per_seed) > 1 else None


def measure(df: pd.DataFrame, by: str | None = None, only: list[str] | None = None) -> Measured:
    """The study's measured disagreement and seed spread, and the minimum detectable difference they imply."""
    found = [pair for pair in pairs(df, by, only) if len(pair.cells) > 1]
    if not found:
        raise CompareError("no pair of cells shares two or more sets with per-question scores: no average to power")
    sets = list(found[0].cells)
    shared = [pair for pair in found if list(pair.cells) == sets]
    cells = {
        label: [pair.cells[name][side] for name in sets]
        for pair in shared
        for label, side in ((pair.a, 0), (pair.b, 1))
    }
    variances = [v for v in map(seed_variance, cells.values()) if v is not None]
    seeds = min(len(cell[0].scores) for cell in cells.values())
    measured = {
        "disagreement": statistics.fmean(disagreement(*pair.cells[name]) for pair in shared for name in sets),
        "seed_sd": float(np.sqrt(np.mean(variances))) if variances else 0.0,
    }
    questions = {name: len(shared[0].cells[name][0].ids) for name in sets}
    rows = comparisons(df, by, only)
    m, average = len(rows), rows[rows["set"] == AVERAGE]  # the family the comparisons Holm-adjust, as they do
    z = norm.ppf(1 - DEFAULTS["alpha"] / (2 * m)) + norm.ppf(DEFAULTS["power"])
    return Measured(
        pairs=len(shared),
        questions=questions,
        seeds=seeds,
        comparisons=m,
        **measured,
        minimum_detectable=minimum_detectable(list(questions.values()), seeds, m, measured),
        floor=minimum_detectable(list(questions.values()), seeds, m, {**measured, "seed_sd": 0.0}),
        from_intervals=float(np.median(z * (average["high"] - average["low"]) / (2 * Z95))),
        largest_difference=float(average["difference"].abs().max()),
    )


def write(df: pd.DataFrame, out: Path, by: str | None = None, only: list[str] | None = None) -> str:
    """power.json in ``out`` (the figures) and the line it prints."""
    found = measure(df, by, only)
    out.mkdir(parents=True, exist_ok=True)
    (out / "power.json").write_text(json.dumps({"by": by, "sets": only, **asdict(found)}, indent=2) + "\n")
    return found.line()
