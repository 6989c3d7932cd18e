"""Do two evaluation methods rank the same cells alike? The generation cross-check of a likelihood study.

``python -m analysis agreement RESULTS_DIR... --set arc_e [--out DIR]``: every cell (model, adapter, placement, size,
seed, training set) that has a job of each method (``eval.method=loglik`` and ``generate``, usually the second a
``mode=eval`` rerun of the first's adapter on a fixed subset of one set) is scored by both on the questions both
scored; then Spearman's and Kendall's rank correlations of the cells' two accuracies (scipy, with their p-values) and,
per cell, how often the two methods picked the same option. A correlation near 1 says a study's ranking does not
hang on how it scored; near 0 with cells this close says the ranking is within what either method can resolve.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.collect import load_existing
from analysis.uncertainty import prediction_rows

CELL = ("model", "adapter", "placement", "size", "train_set", "seed")
METHODS = ("loglik", "generate")


class AgreementError(ValueError):
    """The results hold no cell scored by both methods on the set."""


def _picks(job: str, name: str) -> dict[str, tuple[object, bool]]:
    """(what was picked, whether it was right) per question id of set ``name``."""
    return {
        str(r["id"]): (r.get("extracted"), bool(r["correct"]))
        for r in prediction_rows(Path(job))
        if str(r["id"]).rsplit("/", 1)[0] == name
    }


def _named_alike(loglik: dict, generated: dict, ids: list[str]) -> list[bool]:
    """Per question whose response names an option: whether it is the option likelihood picked."""
    return [loglik[i][0] == generated[i][0] for i in ids if generated[i][0] is not None]


def cells(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """One row per cell with a job of each method: both accuracies on the questions both scored, their number, the
    share of those where the two picked the same option, generation's share of responses naming none, and among
    those naming one, the share that named likelihood's pick."""
    done = df[(df["status"] == "ok") & df["method"].isin(METHODS)]
    rows = []
    for key, group in done.groupby(list(CELL), dropna=False, sort=True):
        jobs = {method: group[group["method"] == method]["job"].tolist() for method in METHODS}
        if not all(len(j) == 1 for j in jobs.values()):
            continue  # a cell without both methods, or with a method twice, is not a pair
        loglik, generated = (_picks(jobs[m][0], name) for m in METHODS)
        ids = sorted(loglik.keys() & generated.keys())
        if ids:
            rows.append(
                dict(zip(CELL, key, strict=True))
                | {
                    "questions": len(ids),
                    "loglik": 100 * np.mean([loglik[i][1] for i in ids]),
                    "generate": 100 * np.mean([generated[i][1] for i in ids]),
                    "same pick": 100 * np.mean([loglik[i][0] == generated[i][0] for i in ids]),
                    "no answer": 100 * np.mean([generated[i][0] is None for i in ids]),
                    "same pick when named": 100 * np.mean(same)
                    if (same := _named_alike(loglik, generated, ids))
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)


def correlations(paired: pd.DataFrame) -> dict[str, float]:
    """Spearman's and Kendall's rank correlations of the cells' accuracies under the two methods, with p-values."""
    rho, rho_p = stats.spearmanr(paired["loglik"], paired["generate"])
    tau, tau_p = stats.kendalltau(paired["loglik"], paired["generate"])
    return {"cells": len(paired), "spearman": rho, "spearman_p": rho_p, "kendall": tau, "kendall_p": tau_p}


def agreement(df: pd.DataFrame, name: str) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """The paired cells, and the rank correlations over all of them and over the trained ones alone (a zero-shot
    base far below every adapter under both methods makes the ranks agree whatever the adapters do)."""
    paired = cells(df, name)
    if len(paired) < 3:
        raise AgreementError(f"{name}: {len(paired)} cells scored by both loglik and generate; ranks need 3 or more")
    summary = {"all cells": correlations(paired)}
    if 3 <= len(trained := paired[paired["adapter"] != "none"]) < len(paired):
        summary["trained cells"] = correlations(trained)
    return paired, {group: {k: float(v) for k, v in found.items()} for group, found in summary.items()}


def write(directories: Sequence[Path], name: str, out: Path) -> list[str]:
    """agreement.md and agreement.csv in ``out``; the lines printed."""
    paired, summary = agreement(load_existing(directories), name)
    out.mkdir(parents=True, exist_ok=True)
    paired.to_csv(out / "agreement.csv", index=False)
    heads = [
        f"{name}, {group} ({found['cells']:.0f}): Spearman {found['spearman']:+.2f} (p {found['spearman_p']:.3f}), "
        f"Kendall {found['kendall']:+.2f} (p {found['kendall_p']:.3f})"
        for group, found in summary.items()
    ]
    table = paired.round(1)
    (out / "agreement.md").write_text("\n".join(f"- {h}" for h in heads) + f"\n\n{table.to_markdown(index=False)}\n")
    return [*heads, *table.to_string(index=False).splitlines()]
