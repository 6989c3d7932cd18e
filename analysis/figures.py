"""The paper's two figures from a results DataFrame: accuracy by placement (Fig. 2) and by adapter size (Fig. 3).
Each function saves a PNG and returns the series it drew, so what a figure shows can be checked."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

PLACEMENTS = ["attn", "mlp", "both"]


def _average(df: pd.DataFrame, sets: list[str]) -> pd.DataFrame:
    ok = df[df["status"] == "ok"].copy()
    ok["Avg"] = ok[[f"acc/{s}" for s in sets]].mean(axis=1)
    return ok


def placement_figure(df: pd.DataFrame, sets: list[str], path: Path) -> dict[str, dict[str, float]]:
    """Average accuracy of each adapter at each placement, as grouped bars."""
    ok = _average(df, sets)
    ok = ok[ok["placement"].isin(PLACEMENTS)]
    series = {
        adapter: {p: float(g[g["placement"] == p]["Avg"].mean()) for p in PLACEMENTS if (g["placement"] == p).any()}
        for adapter, g in ok.groupby("adapter", sort=False)
    }
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(PLACEMENTS), 1)
    for i, placement in enumerate(PLACEMENTS):
        xs = [j + i * width for j, adapter in enumerate(series) if placement in series[adapter]]
        ys = [series[adapter][placement] for adapter in series if placement in series[adapter]]
        ax.bar(xs, ys, width, label=placement)
    ax.set_xticks([j + width for j in range(len(series))], list(series))
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"average accuracy over {len(sets)} sets (%)")
    ax.set_title("Placement")
    ax.legend(title="placement")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return series


def configuration_figure(df: pd.DataFrame, sets: list[str], path: Path) -> dict[str, dict[float, float]]:
    """Average accuracy against adapter size (bottleneck size, rank or virtual tokens), one line per adapter."""
    ok = _average(df, sets).dropna(subset=["size"])
    series = {
        adapter: {float(size): float(acc) for size, acc in g.groupby("size")["Avg"].mean().items()}
        for adapter, g in ok.groupby("adapter", sort=False)
    }
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for adapter, points in series.items():
        sizes = sorted(points)
        ax.plot(range(len(sizes)), [points[s] for s in sizes], marker="o", label=adapter)
        for x, size in enumerate(sizes):
            ax.annotate(f"{size:g}", (x, points[size]), textcoords="offset points", xytext=(0, 5), fontsize=7)
    ax.set_xlabel("size step (bottleneck size, rank or virtual tokens, as labelled)")
    ax.set_ylabel(f"average accuracy over {len(sets)} sets (%)")
    ax.set_title("Configuration")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return series
