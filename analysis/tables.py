"""The paper's tables from a results DataFrame: rows model × adapter and every setting that differs between jobs
(the axes, then any resolved config value or data file; only the seed is pooled), columns the evaluation sets of
one domain + Avg + trainable %: the mean over seeds with its 95% interval over questions and seeds (``cells``), the
best of a column bold only when it is significantly better than the runner-up, and the paper's reported average
beside every row whose setting matches a cell of the paper."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.cells import statistics, verdicts
from analysis.paper import COMMONSENSE_SETS, MATH_SETS, SETTING, TRAINING_SET, reported
from llm_adapters.data.sets import EVAL_SETS

SETTING_COLUMNS = ["model", "adapter", "placement", "size", "train_set", "method", "protocol", "mode", "evaluated"]


def domain_sets(df: pd.DataFrame, domain: str) -> list[str]:
    """The evaluation sets of a domain that the jobs report, in the paper's column order."""
    present = [c.removeprefix("acc/") for c in df.columns if c.startswith("acc/")]
    order = MATH_SETS if domain == "math" else COMMONSENSE_SETS
    mine = [s for s in present if (EVAL_SETS[s].domain if s in EVAL_SETS else "math") == domain]
    return [s for s in order if s in mine] + sorted(s for s in mine if s not in order)


def with_average(df: pd.DataFrame, sets: list[str], metric: str = "acc") -> pd.DataFrame:
    """The ``ok`` jobs that have at least one of ``sets`` in ``metric`` (``acc``, or ``accn``: acc_norm), with
    ``Avg``: their mean over the sets they have (the paper's Avg column, and every figure's accuracy)."""
    columns = [f"{metric}/{s}" for s in sets]
    if any(c not in df for c in columns):
        return df.iloc[0:0].assign(Avg=[])
    ok = df[df["status"] == "ok"].dropna(subset=columns, how="all").copy()
    ok["Avg"] = ok[columns].mean(axis=1)
    return ok


# The resolved config values each axis column is read from. Where such a value varies with its axis it is that axis
# (LoRA's alpha beside series' bottleneck size is the adapter changing), so it is a column of its own only where it
# varies within a cell of the axes; any other value is a column wherever two jobs set it differently.
AXIS_SOURCES = {
    "model": ("cfg/model.",),
    "adapter": ("cfg/adapter.",),
    "placement": ("cfg/placement.",),
    "size": ("cfg/adapter.",),
    "train_set": ("cfg/dataset.", "data/"),
    "method": ("cfg/eval.method", "cfg/eval.prompt"),
    "protocol": ("cfg/protocol.",),
    "mode": ("cfg/mode",),
    "evaluated": ("cfg/adapter_path",),
}


def setting_columns(ok: pd.DataFrame) -> list[str]:
    """The columns that tell cells apart: model and adapter, the axes that vary, then every resolved config value
    (``cfg/...``) and data file digest (``data/...``) that varies between the jobs (``AXIS_SOURCES``: within a cell,
    for a value an axis is read from), so jobs share a cell only when they differ in the seed alone (a sweep over
    ``train.lr`` is two rows, never two "seeds"), and a search that drew a size and a learning rate together has
    both as columns, whichever launcher or sweeper ran it."""
    keys = [c for c in SETTING_COLUMNS if c in ok and (ok[c].nunique(dropna=False) > 1 or c in ("model", "adapter"))]
    owned = tuple(prefix for axis in AXIS_SOURCES for prefix in AXIS_SOURCES[axis])
    for column in (c for c in ok.columns if c.startswith(("cfg/", "data/"))):
        within = ok.groupby(keys, dropna=False, sort=False)[column].nunique(dropna=False).max() > 1
        # Two values set (not a key only some jobs have, as the solved budget.target beside the baselines).
        between = not column.startswith(owned) and ok[column].dropna().astype(str).nunique() > 1
        if within or between:
            keys.append(column)
    return keys


def table(df: pd.DataFrame, domain: str, metric: str = "acc") -> pd.DataFrame:
    """Numbers of one domain's table: ``<set>`` means, ``<set> std``, ``Avg``, ``Avg std``, ``seeds``,
    ``trainable %``, ``paper Avg`` and ``Δ Avg``. Only ``ok`` jobs count; jobs missing a set count for the others.
    ``metric="accn"``: likelihood jobs' acc_norm (only the jobs that report it; empty when none does)."""
    sets = domain_sets(df, domain)
    if not sets or df.empty:
        return pd.DataFrame()
    ok = with_average(df, sets, metric)
    if ok.empty:
        return pd.DataFrame()
    keys = setting_columns(ok)
    grouped = ok.groupby(keys, dropna=False, sort=False)
    columns = [f"{metric}/{s}" for s in sets]
    out = grouped[[*columns, "Avg"]].mean()
    out.columns = [*sets, "Avg"]
    std = grouped[[*columns, "Avg"]].std()
    for s, column in zip([*sets, "Avg"], std.columns, strict=True):
        out[f"{s} std"] = std[column]
    out["seeds"] = grouped["seed"].nunique()
    out["trainable %"] = grouped["trainable_pct"].mean()
    out = out.reset_index()
    spread, cells = statistics(grouped, sets, metric)
    out = pd.concat([out, spread], axis=1)
    for column in [*sets, "Avg"]:
        out[f"{column} best"], out[f"{column} tied"] = verdicts(out[column].tolist(), cells[column])
    paper = [_paper_avg(r, domain, sets) for r in grouped.first().reset_index().to_dict("records")]
    out["paper Avg"] = paper if metric == "acc" else np.nan  # the paper reports generation accuracy only
    out["Δ Avg"] = out["Avg"] - out["paper Avg"]
    out = out.rename(columns={c: c.removeprefix("cfg/") for c in keys})
    out.attrs["settings"] = [c.removeprefix("cfg/") for c in keys]
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
    """Cells as "mean [95% interval] (questions × seeds)", the best of a column in bold only when it is
    significantly better than the runner-up (``cells.verdicts``), and "≈" on every cell that cannot be told from
    the column's best."""
    accuracy = [c for c in numbers.columns if f"{c} low" in numbers.columns]
    keys = settings_of(numbers)
    out = numbers[keys].copy()
    for column in accuracy:
        cells = []
        for _, r in numbers.iterrows():
            spread = "" if np.isnan(r[f"{column} low"]) else f" [{r[f'{column} low']:.1f}, {r[f'{column} high']:.1f}]"
            size = f" ({r[f'{column} n×k']})" if f"{column} n×k" in numbers.columns else ""
            text = f"{r[column]:.1f}{spread}{size}{' ≈' if r.get(f'{column} tied') else ''}"
            cells.append(f"{bold[0]}{text}{bold[1]}" if r.get(f"{column} best") else text)
        out[column] = cells
    out["trainable %"] = numbers["trainable %"].map(lambda v: f"{v:.3f}")
    out["paper Avg"] = numbers["paper Avg"].map(lambda v: "" if np.isnan(v) else f"{v:.1f}")
    out["Δ Avg"] = numbers["Δ Avg"].map(lambda v: "" if np.isnan(v) else f"{v:+.1f}")
    return out


def settings_of(frame: pd.DataFrame) -> list[str]:
    """The setting columns of a table (``table`` names them; a table read back from CSV has the fixed axes)."""
    return frame.attrs.get("settings") or [c for c in frame.columns if c in SETTING_COLUMNS]


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
    for column in settings_of(cells):
        if column in out:
            out[column] = out[column].map(lambda v: _tex(str(v)))
    return out.rename(columns=_tex)
