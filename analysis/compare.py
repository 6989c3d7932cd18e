"""Paired comparisons across a study: every two cells that differ in one axis (``--by``) and in nothing else, or any
two cells, on each evaluation set they share (``uncertainty.compare``: paired over the same questions, unpaired where
the questions differ, said in the row) and, where two or more sets are paired, on the average of those sets'
accuracies (``uncertainty.compare_average``, the row ``Avg``): the difference, its 95% interval and p-value,
Holm-adjusted across all the study's rows, the averages' included. Written as comparisons.md and comparisons.csv."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.tables import domain_sets, setting_columns, with_average
from analysis.uncertainty import ALPHA, Cell, compare, compare_average, holm, question_scores

AVERAGE = "Avg"  # the row of a pair's difference on the mean of its paired sets' accuracies, as the tables' column


class CompareError(ValueError):
    """Nothing can be compared (one line, exit 2): the message says why."""


def _shown(value: object) -> str | None:
    """A setting as a label shows it: none when absent (None, "" or pandas' NaN for a kind without the axis), a
    whole number without pandas' ``.0``."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _label(setting: dict, varying: list[str]) -> str:
    placement = f"@{shown}" if (shown := _shown(setting.get("placement"))) is not None else ""
    rest = [
        f"{k.removeprefix('cfg/')}={shown}"
        for k in varying
        if k not in ("adapter", "placement") and (shown := _shown(setting[k])) is not None
    ]
    return " ".join([f"{setting['adapter']}{placement}", *rest])


@dataclass
class Pair:
    """Two cells that differ in the compared axis alone, with their per-question cells on each set they share."""

    a: str
    b: str
    cells: dict[str, tuple[Cell, Cell]]  # set → (a's cell, b's cell), in the domain's set order


def pairs(df: pd.DataFrame, by: str | None = None, only: list[str] | None = None) -> list[Pair]:
    """Every two cells of the study (``by``: only those that differ in that axis alone) on each set they share
    (``only``: only these sets); the one enumeration the comparisons and the measured power both read."""
    reported = set(domain_sets(df, "math") + domain_sets(df, "commonsense"))
    if only is not None and (missing := [name for name in only if name not in reported]):
        raise CompareError(f"--sets {missing[0]}: no job reports it (they report {', '.join(sorted(reported))})")
    found = []
    for domain in ("math", "commonsense"):
        sets = [name for name in domain_sets(df, domain) if only is None or name in only]
        ok = with_average(df, sets) if sets else pd.DataFrame()
        if ok.empty:
            continue
        keys = setting_columns(ok)
        if by is not None and by not in keys and f"cfg/{by}" not in keys:
            varying = [k.removeprefix("cfg/") for k in keys]
            raise CompareError(f"--by {by}: no such axis varies in these results (they vary in {', '.join(varying)})")
        column = None if by is None else (by if by in keys else f"cfg/{by}")
        groups = [
            (dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True)), g)
            for k, g in ok.groupby(keys, dropna=False, sort=False)
        ]
        if len(groups) < 2:
            raise CompareError(f"only one cell in the {domain} results: nothing to compare")
        varying = [k for k in keys if len({str(s[k]) for s, _ in groups}) > 1]
        scores = {id(g): [question_scores(job) for job in g["job"]] for _, g in groups}
        for (sa, ga), (sb, gb) in itertools.combinations(groups, 2):
            if column is not None and [k for k in keys if str(sa[k]) != str(sb[k])] != [column]:
                continue
            cells = {}
            for name in sets:
                a = Cell.of([s.get(name, {}) for s in scores[id(ga)]])
                b = Cell.of([s.get(name, {}) for s in scores[id(gb)]])
                if a is not None and b is not None:
                    cells[name] = (a, b)
            found.append(Pair(_label(sa, varying), _label(sb, varying), cells))
    return found


def comparisons(df: pd.DataFrame, by: str | None = None, only: list[str] | None = None) -> pd.DataFrame:
    """One row per (pair of cells, set): ``a``, ``b``, ``set``, ``difference``, ``low``, ``high``, ``p``, ``p_holm``,
    ``paired``, ``significant``. ``by``: only pairs that differ in that axis alone; ``only``: only these sets."""
    rows = []
    for pair in pairs(df, by, only):
        label, paired = {"a": pair.a, "b": pair.b}, []
        for name, (a, b) in pair.cells.items():
            found = compare(a, b)
            rows.append({**label, "set": name, **vars(found)})
            paired += [(a, b)] if found.paired else []
        if len(paired) > 1:  # the average of the sets both answered on the same questions
            rows.append({**label, "set": AVERAGE, **vars(compare_average(paired))})
    return adjusted(rows, "no two cells with per-question scores (predictions.jsonl) to compare")


def adjusted(rows: list[dict], empty: str) -> pd.DataFrame:
    """The rows as a frame with ``p_holm`` (Holm across all of them: one family) and ``significant``; ``empty`` is
    the error when there are none."""
    if not rows:
        raise CompareError(empty)
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out["p"].tolist())
    out["significant"] = out["p_holm"] < ALPHA
    return out


def verdict(row: pd.Series) -> str:
    """ "lora@both − lora@attn on arc_e: +3.1 [+1.2, +5.0], p_holm 0.004" (unpaired comparisons say so)."""
    how = "" if row["paired"] else " (unpaired: different questions)"
    return (
        f"{row['a']} − {row['b']} on {row['set']}: {row['difference']:+.1f} [{row['low']:+.1f}, {row['high']:+.1f}], "
        f"p_holm {row['p_holm']:.3g}{how}"
    )


def write(found: pd.DataFrame, out: Path) -> list[str]:
    """comparisons.csv (numbers) and comparisons.md (the verdict lines and the table); returns the verdicts."""
    out.mkdir(parents=True, exist_ok=True)
    found.to_csv(out / "comparisons.csv", index=False)
    lines = [verdict(r) for _, r in found.iterrows()]
    table = found.round({"difference": 2, "low": 2, "high": 2, "p": 4, "p_holm": 4}).to_markdown(index=False)
    note = (
        "Paired differences (percentage points), 95% bootstrap intervals over questions and seeds, paired "
        f"permutation p-values (exact on a set, its normal form on {AVERAGE}, the mean of the sets' accuracies) "
        f"Holm-adjusted across these {len(found)} comparisons; significant: p_holm < {ALPHA}."
    )
    (out / "comparisons.md").write_text("\n".join([note, "", *[f"- {line}" for line in lines], "", table, ""]))
    return lines
