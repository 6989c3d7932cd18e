"""The paper's two figures from a results DataFrame: accuracy by placement (Fig. 2) and by adapter size (Fig. 3).
Each function saves a PNG and returns the series it drew, so what a figure shows can be checked."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis.tables import with_average

PLACEMENTS = ["attn", "mlp", "both"]
COLOURS = {"attn": "tab:blue", "mlp": "tab:orange", "both": "tab:green"}  # a placement keeps its colour in every figure


def _accuracy_label(sets: list[str]) -> str:
    return f"accuracy on {sets[0]} (%)" if len(sets) == 1 else f"average accuracy over {len(sets)} sets (%)"


def placement_figure(df: pd.DataFrame, sets: list[str], path: Path) -> dict[str, dict[str, float]]:
    """Average accuracy of each adapter at each placement (mean over seeds), as grouped bars centred on their
    adapter's tick, with each seed's value as a dot and ± one standard deviation across seeds as an error bar; the
    zero-shot base model (``adapter=none``), when in the results, as a dashed line. Only placements with data are
    drawn and named; with nothing to draw, no file is written."""
    ok = with_average(df, sets)
    zero_shot = ok[ok["adapter"] == "none"]["Avg"]
    ok = ok[ok["placement"].isin(PLACEMENTS)]
    series = {
        adapter: {p: float(g[g["placement"] == p]["Avg"].mean()) for p in PLACEMENTS if (g["placement"] == p).any()}
        for adapter, g in ok.groupby("adapter", sort=False)
    }
    if not series:
        return series
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
            errors.append(float(seeds.std()) if len(seeds) > 1 else 0.0)
            ax.scatter([j + offset] * len(seeds), seeds, color="black", s=8, zorder=3)
        ax.bar(xs, ys, width, yerr=errors, capsize=3, label=placement, color=COLOURS[placement])
    if not zero_shot.empty:
        ax.axhline(float(zero_shot.mean()), color="grey", linestyle="--", label="zero-shot")
    ax.set_xticks(range(len(series)), list(series))
    ax.set_ylim(bottom=0)
    ax.set_ylabel(_accuracy_label(sets))
    ax.set_title("Placement (bars: mean over seeds; dots: seeds; error bars: ±1 std)", fontsize=9)
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
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for line, points in series.items():
        sizes = sorted(points)
        ax.plot(sizes, [points[s] for s in sizes], marker="o", label=line)
    ticks = sorted({size for points in series.values() for size in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("size (bottleneck size, rank or virtual tokens)")
    ax.set_ylabel(_accuracy_label(sets))
    ax.set_title("Configuration (mean over seeds)", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return series
