"""The paper's two figures from a results DataFrame: accuracy by placement (Fig. 2) and by adapter size (Fig. 3).
Each function saves a PNG and returns the series it drew, so what a figure shows can be checked."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.cells import statistics
from analysis.tables import with_average
from analysis.uncertainty import prediction_rows
from llm_adapters.data.sets import EVAL_SETS

PLACEMENTS = ["attn", "mlp", "both"]
COLOURS = {"attn": "tab:blue", "mlp": "tab:orange", "both": "tab:green"}  # a placement keeps its colour in every figure


def reference_rates(ok: pd.DataFrame, sets: list[str]) -> tuple[float, float] | None:
    """Chance and the majority-class rate (%) on the average of multiple-choice sets, from one job's predictions:
    chance is each question's 1 / (number of the set's label words its prompt names: the ``Answer format:`` line
    lists them), the majority rate the share of the most frequent gold answer. None when a set is not multiple
    choice or no predictions are there to read."""
    if "job" not in ok or ok.empty or any(EVAL_SETS.get(s) is None or EVAL_SETS[s].answer == "number" for s in sets):
        return None
    rows, chance, majority = prediction_rows(Path(ok["job"].iloc[0])), [], []
    for s in sets:
        mine, labels = [r for r in rows if r["id"].rsplit("/", 1)[0] == s], EVAL_SETS[s].labels
        if not mine:
            return None
        named = [sum(label in r["prompt"] for label in labels) or len(labels) for r in mine]
        chance.append(100 * sum(1 / k for k in named) / len(mine))
        majority.append(100 * Counter(str(r["answer"]) for r in mine).most_common(1)[0][1] / len(mine))
    return sum(chance) / len(sets), sum(majority) / len(sets)


def _intervals(ok: pd.DataFrame, keys: list[str], sets: list[str]) -> dict[tuple, tuple[float, float]]:
    """Each group's 95% interval of its Avg over questions and seeds (``cells``), by its key values."""
    grouped = ok.groupby(keys, dropna=False, sort=False)
    spread, _ = statistics(grouped, sets)
    names = [k if isinstance(k, tuple) else (k,) for k in grouped.groups]
    return {name: (r["Avg low"], r["Avg high"]) for name, (_, r) in zip(names, spread.iterrows(), strict=True)}


def _basis(ok: pd.DataFrame, sets: list[str]) -> str:
    """What the error bars resample: questions and seeds, or (no predictions kept) the Wilson interval of counts."""
    kept = "job" in ok and all((Path(job) / "predictions.jsonl").is_file() for job in ok["job"])
    return "questions × seeds" if kept else "Wilson, pooled counts"


def _error(value: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    """(below, above) for an asymmetric error bar; zero where no interval exists."""
    if bounds is None or np.isnan(bounds[0]):
        return 0.0, 0.0
    return max(0.0, value - bounds[0]), max(0.0, bounds[1] - value)


def _accuracy_label(sets: list[str]) -> str:
    return f"accuracy on {sets[0]} (%)" if len(sets) == 1 else f"average accuracy over {len(sets)} sets (%)"


def placement_figure(df: pd.DataFrame, sets: list[str], path: Path) -> dict[str, dict[str, float]]:
    """Average accuracy of each adapter at each placement (mean over seeds), as grouped bars centred on their
    adapter's tick, with each seed's value as a dot and the cell's 95% interval over questions and seeds as an error
    bar; the zero-shot base model (``adapter=none``), when in the results, as a dashed line; chance and the
    majority-class rate as dotted lines on multiple-choice sets. Only placements with data are drawn and named; with
    nothing to draw, no file is written."""
    ok = with_average(df, sets)
    zero_shot, rates = ok[ok["adapter"] == "none"]["Avg"], reference_rates(ok, sets)
    ok = ok[ok["placement"].isin(PLACEMENTS)]
    series = {
        adapter: {p: float(g[g["placement"] == p]["Avg"].mean()) for p in PLACEMENTS if (g["placement"] == p).any()}
        for adapter, g in ok.groupby("adapter", sort=False)
    }
    if not series:
        return series
    bounds = _intervals(ok, ["adapter", "placement"], sets)
    present = [p for p in PLACEMENTS if any(p in bars for bars in series.values())]
    width = 0.8 / len(present)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for i, placement in enumerate(present):
        offset = (i - (len(present) - 1) / 2) * width
        xs, ys, errors = [], [], []
        for j, (adapter, bars) in enumerate(series.items()):
            if placement not in bars:
                continue
            seeds = ok[(ok["adapter"] == adapter) & (ok["placement"] == placement)]["Avg"]
            xs.append(j + offset)
            ys.append(bars[placement])
            errors.append(_error(bars[placement], bounds.get((adapter, placement))))
            ax.scatter([j + offset] * len(seeds), seeds, color="black", s=8, zorder=3)
        yerr = np.array(errors).T if errors else None
        ax.bar(xs, ys, width, yerr=yerr, capsize=3, label=placement, color=COLOURS[placement])
    if not zero_shot.empty:
        ax.axhline(float(zero_shot.mean()), color="grey", linestyle="--", label="zero-shot")
    if rates is not None:
        ax.axhline(rates[0], color="black", linestyle=":", linewidth=1, label=f"chance ({rates[0]:.1f})")
        ax.axhline(rates[1], color="tab:red", linestyle=":", linewidth=1, label=f"majority class ({rates[1]:.1f})")
    ax.set_xticks(range(len(series)), list(series))
    ax.set_ylim(bottom=0)
    ax.set_ylabel(_accuracy_label(sets))
    ax.set_title(
        f"Placement (bars: mean over seeds; dots: seeds; error bars: 95% interval, {_basis(ok, sets)})", fontsize=8
    )
    ax.legend(title="placement", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return series


def configuration_figure(df: pd.DataFrame, sets: list[str], path: Path) -> dict[str, dict[float, float]]:
    """Average accuracy against adapter size (bottleneck size, rank or virtual tokens), one line per adapter and
    placement (mean over seeds), sizes on a logarithmic axis with their values as ticks. A line needs two sizes:
    with none to draw, no file is written and the result is empty."""
    ok = with_average(df, sets).dropna(subset=["size"])
    ok["line"] = ok["adapter"] + ok["placement"].map(lambda p: f" @ {p}" if isinstance(p, str) else "")
    series = {
        line: {float(size): float(acc) for size, acc in g.groupby("size")["Avg"].mean().items()}
        for line, g in ok.groupby("line", sort=False)
    }
    series = {line: points for line, points in series.items() if len(points) > 1}
    if not series:
        return series
    bounds = _intervals(ok, ["line", "size"], sets)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for line, points in series.items():
        sizes = sorted(points)
        errors = np.array([_error(points[s], bounds.get((line, s))) for s in sizes]).T
        ax.errorbar(sizes, [points[s] for s in sizes], yerr=errors, marker="o", capsize=3, label=line)
    ticks = sorted({size for points in series.values() for size in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("size (bottleneck size, rank or virtual tokens)")
    ax.set_ylabel(_accuracy_label(sets))
    ax.set_title(f"Configuration (mean over seeds; error bars: 95% interval, {_basis(ok, sets)})", fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return series
