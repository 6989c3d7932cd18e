"""The paper's tables from a results DataFrame: rows model × adapter (and whatever else differs between jobs:
placement, size, training set, protocol), columns the evaluation sets of one domain + Avg + trainable %, mean ± std
over seeds with their count, the best value of each column marked, and the paper's reported average beside every row
whose setting matches a cell of the paper."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.paper import COMMONSENSE_SETS, MATH_SETS, SETTING, TRAINING_SET, reported
from llm_adapters.records import EVAL_SETS

SETTING_COLUMNS = ["model", "adapter", "placement", "size", "train_set", "protocol", "mode", "evaluated"]


def domain_sets(df: pd.DataFrame, domain: str) -> list[str]:
    """The evaluation sets of a domain that the jobs report, in the paper's column order."""
    present = [c.removeprefix("acc/") for c in df.columns if c.startswith("acc/")]
    order = MATH_SETS if domain == "math" else COMMONSENSE_SETS
    mine = [s for s in present if (EVAL_SETS[s].domain if s in EVAL_SETS else "math") == domain]
    return [s for s in order if s in mine] + sorted(s for s in mine if s not in order)


def with_average(df: pd.DataFrame, sets: list[str]) -> pd.DataFrame:
    """The ``ok`` jobs that have at least one of ``sets``, with ``Avg``: their mean over the sets they have (the
    paper's Avg column, and every figure's accuracy)."""
    ok = df[df["status"] == "ok"].dropna(subset=[f"acc/{s}" for s in sets], how="all").copy()
    ok["Avg"] = ok[[f"acc/{s}" for s in sets]].mean(axis=1)
    return ok


def table(df: pd.DataFrame, domain: str) -> pd.DataFrame:
    """Numbers of one domain's table: ``<set>`` means, ``<set> std``, ``Avg``, ``Avg std``, ``seeds``,
    ``trainable %``, ``paper Avg`` and ``Δ Avg``. Only ``ok`` jobs count; jobs missing a set count for the others."""
    sets = domain_sets(df, domain)
    if not sets or df.empty:
        return pd.DataFrame()
    ok = with_average(df, sets)
    keys = [c for c in SETTING_COLUMNS if c in ok and (ok[c].nunique(dropna=False) > 1 or c in ("model", "adapter"))]
    grouped = ok.groupby(keys, dropna=False, sort=False)
    out = grouped[[f"acc/{s}" for s in sets] + ["Avg"]].mean()
    out.columns = [*sets, "Avg"]
    std = grouped[[f"acc/{s}" for s in sets] + ["Avg"]].std()
    for s, column in zip([*sets, "Avg"], std.columns, strict=True):
        out[f"{s} std"] = std[column]
    out["seeds"] = grouped["seed"].nunique()
    out["trainable %"] = grouped["trainable_pct"].mean()
    out = out.reset_index()
    out["paper Avg"] = [_paper_avg(r, domain, sets) for r in grouped.first().reset_index().to_dict("records")]
    out["Δ Avg"] = out["Avg"] - out["paper Avg"]
    return out


def _paper_avg(first: dict, domain: str, sets: list[str]) -> float:
    """The paper's average over the same sets, when the job ran the paper's setting for that cell."""
    if first.get("train_set") != TRAINING_SET.get(domain) or first.get("size") != SETTING.get(first["adapter"]):
        return np.nan
    if first.get("placement") not in (None, "best"):
        return np.nan
    cells = [reported(domain, first["model"], first["adapter"], s) for s in sets]
    return float(np.mean(cells)) if cells and None not in cells else np.nan


def formatted(numbers: pd.DataFrame, bold: tuple[str, str]) -> pd.DataFrame:
    """Cells as "mean ± std (seeds)" (std only with several seeds), the best of each accuracy column in bold."""
    accuracy = [c for c in numbers.columns if f"{c} std" in numbers.columns]
    keys = [c for c in numbers.columns if c in SETTING_COLUMNS]
    out = numbers[keys].copy()
    for column in accuracy:
        best = numbers[column].max()
        cells = []
        for value, spread, seeds in zip(numbers[column], numbers[f"{column} std"], numbers["seeds"], strict=True):
            text = f"{value:.1f}" if seeds < 2 or np.isnan(spread) else f"{value:.1f} ± {spread:.1f} ({seeds})"
            cells.append(f"{bold[0]}{text}{bold[1]}" if value == best else text)
        out[column] = cells
    out["trainable %"] = numbers["trainable %"].map(lambda v: f"{v:.3f}")
    out["paper Avg"] = numbers["paper Avg"].map(lambda v: "" if np.isnan(v) else f"{v:.1f}")
    out["Δ Avg"] = numbers["Δ Avg"].map(lambda v: "" if np.isnan(v) else f"{v:+.1f}")
    return out


def _tex(text: str) -> str:
    return (
        text.replace("\\", r"\textbackslash{}")
        .replace("_", r"\_")
        .replace("%", r"\%")
        .replace("&", r"\&")
        .replace("Δ", r"$\Delta$")
    )


def tex_escaped(cells: pd.DataFrame) -> pd.DataFrame:
    """LaTeX-safe headers and setting cells (the accuracy cells hold only numbers and the bold macro)."""
    out = cells.copy()
    for column in SETTING_COLUMNS:
        if column in out:
            out[column] = out[column].map(lambda v: _tex(str(v)))
    return out.rename(columns=_tex)
