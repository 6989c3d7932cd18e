"""``python -m analysis search SWEEP_DIR``: a search's trials, its best trial or Pareto front with each accuracy's
95% interval, and its figures, from the Optuna study the sweeper kept (``optuna.db`` in the sweep directory, or
``--storage URL``) and each trial's job record.

An accuracy's interval is the one the tables give a cell of one seed (``cells``): a bootstrap over the job's test
questions (each set's questions resampled on their own, the sets averaged for ``accuracy``), or, for a job that left
no predictions, the Wilson interval of its pooled counts. A completed trial is ``tied`` with the best one when its
accuracy lies inside the best one's interval: a search found the best configuration, to what its test questions can
tell, at the first trial that is tied with (or is) the best.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.cells import average
from analysis.uncertainty import Cell, interval, question_scores
from llm_adapters.files import shown
from llm_adapters.stats.intervals import wilson


class SearchError(ValueError):
    """A search directory or storage without a study to read: one line."""


def load_study(sweep_dir: Path, storage: str | None = None, name: str | None = None) -> Any:
    """The study of a sweep directory (its ``optuna.db``), or of ``storage``; ``name`` when it holds several."""
    import optuna

    if storage is None:
        db = sweep_dir / "optuna.db"
        if not db.is_file():
            raise SearchError(f"{sweep_dir}: no optuna.db (not a search's sweep directory; or give --storage URL)")
        storage = f"sqlite:///{db.resolve()}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name is None and len(names) != 1:
        raise SearchError(f"{storage}: {len(names)} studies ({', '.join(names) or 'none'}): name one with --study")
    if name is not None and name not in names:
        raise SearchError(f"{storage}: no study '{name}' (it has {', '.join(names) or 'none'})")
    return optuna.load_study(study_name=name or names[0], storage=storage)


def accuracy_interval(job_dir: Path, results: dict[str, Any], objective: str) -> tuple[list[float], str]:
    """The 95% interval of an ``accuracy`` objective of one job, and what it resamples."""
    sets = list(results.get("eval") or {})
    if objective.startswith("accuracy/"):
        sets = [objective.removeprefix("accuracy/")]
    scores = question_scores(job_dir)
    cells = [Cell.of([scores.get(s, {})]) for s in sets]
    if cells and all(c is not None for c in cells):
        return (interval(cells[0]) if len(cells) == 1 else average(cells)[1]), "questions"
    metrics = [results["eval"][s] for s in sets]
    correct = round(sum(m["accuracy"] * m["n"] / 100 for m in metrics))
    return list(wilson(correct, sum(int(m["n"]) for m in metrics)) or [np.nan, np.nan]), "counts"


def _job(recorded: str | None, sweep_dir: Path) -> str | None:
    """A trial's job directory: as recorded, or by its name in the sweep directory (a study moved or cloned);
    relative to the working directory when it is below it, so written tables name no machine's paths."""
    if recorded is None:
        return None
    found = Path(recorded) if Path(recorded).is_dir() else sweep_dir / Path(recorded).name
    if not found.is_dir():
        return None
    return shown(found)


def trials_frame(study: Any, sweep_dir: Path) -> pd.DataFrame:
    """One row per trial: number, state, its drawn parameters, objective values (named by what the sweeper
    recorded), the accuracy objectives' intervals, the job directory and, for a failed trial, the job's reason."""
    objectives = study.user_attrs.get("objectives") or [f"value{i}" for i in range(len(study.directions))]
    rows = []
    for trial in study.trials:
        row = {"trial": trial.number, "state": trial.state.name, **trial.params}
        row["job"], row["reason"] = _job(trial.user_attrs.get("job_dir"), sweep_dir), trial.user_attrs.get("reason")
        complete = trial.state.name == "COMPLETE"  # a pruned trial's values are its last validation report
        for name, value in zip(objectives, trial.values if complete else [None] * len(objectives), strict=True):
            row[name] = value
            if name.startswith("accuracy") and value is not None and row["job"]:
                results = json.loads((Path(row["job"]) / "results.json").read_text())
                (row[f"{name} low"], row[f"{name} high"]), row["basis"] = accuracy_interval(
                    Path(row["job"]), results, name
                )
        rows.append(row)
    return pd.DataFrame(rows)


def best_rows(study: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """The best trial (one objective) or the Pareto front (several, by Optuna's ``best_trials``)."""
    best = [t.number for t in study.best_trials] if len(study.directions) > 1 else [study.best_trial.number]
    return frame[frame["trial"].isin(best)]


def tied_with_best(frame: pd.DataFrame, objective: str) -> pd.Series:
    """Per completed trial: its ``objective`` lies inside the 95% interval of the highest one's."""
    done = frame[frame["state"] == "COMPLETE"]
    top = done.loc[done[objective].idxmax()]
    return done[objective].between(top[f"{objective} low"], top[f"{objective} high"])


def history_figure(frame: pd.DataFrame, objective: str, path: Path) -> list[float]:
    """The objective of each completed trial in order, with its interval, and the best so far; returns the line."""
    done = frame[frame["state"] == "COMPLETE"].sort_values("trial")
    values = done[objective].to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if f"{objective} low" in done:
        below, above = values - done[f"{objective} low"], done[f"{objective} high"] - values
        ax.errorbar(done["trial"], values, yerr=[below, above], fmt="o", capsize=3, label="trial (95% interval)")
    else:
        ax.plot(done["trial"], values, "o", label="trial")
    best = np.maximum.accumulate(values).tolist() if len(values) else []
    ax.step(done["trial"], best, where="post", color="black", label="best so far")
    ax.set(xlabel="trial", ylabel=objective, title="Optimization history")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return best


def pareto_figure(frame: pd.DataFrame, front: pd.DataFrame, objectives: Sequence[str], path: Path) -> bool:
    """Accuracy against the parameter objective, coloured by kind, the front joined; False without such a pair."""
    accuracy = next((o for o in objectives if o.startswith("accuracy")), None)
    cost = next((o for o in objectives if o in ("trainable", "trainable_pct")), None)
    if accuracy is None or cost is None:
        return False
    done = frame[frame["state"] == "COMPLETE"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, group in done.groupby(done["adapter"] if "adapter" in done else pd.Series("", index=done.index)):
        yerr = None
        if f"{accuracy} low" in group:
            yerr = [group[accuracy] - group[f"{accuracy} low"], group[f"{accuracy} high"] - group[accuracy]]
        ax.errorbar(group[cost], group[accuracy], yerr=yerr, fmt="o", capsize=3, label=str(kind) or None, alpha=0.8)
    line = front.sort_values(cost)
    ax.plot(line[cost], line[accuracy], "k--", marker="*", markersize=12, label="Pareto front")
    ax.set(xlabel=cost, ylabel=f"{accuracy} (95% interval)", title="Accuracy against trainable parameters")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write(sweep_dir: Path, out: Path, storage: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Every file into ``out``: trials.csv/.md, best.md (best trial or front), history.png, pareto.png."""
    study = load_study(sweep_dir, storage, name)
    frame = trials_frame(study, sweep_dir)
    done = frame[frame["state"] == "COMPLETE"] if len(frame) else frame
    if done.empty:
        raise SearchError(f"study '{study.study_name}': no trial completed")
    out.mkdir(parents=True, exist_ok=True)
    objectives = study.user_attrs.get("objectives") or [c for c in frame if c.startswith("value")]
    frame.to_csv(out / "trials.csv", index=False)
    shown = frame.drop(columns=["job"]).round(3)
    (out / "trials.md").write_text(shown.to_markdown(index=False) + "\n")
    front = best_rows(study, frame)
    (out / "best.md").write_text(front.drop(columns=["job", "reason"]).round(3).to_markdown(index=False) + "\n")
    written: dict[str, Any] = {"trials": len(frame), "completed": len(done), "best": front["trial"].tolist()}
    accuracy = next((o for o in objectives if o.startswith("accuracy")), objectives[0])
    written["history"] = history_figure(frame, accuracy, out / "history.png")
    if f"{accuracy} low" in frame:
        tied = tied_with_best(frame, accuracy)
        written["first_tied_with_best"] = int(done.loc[tied[tied].index, "trial"].min())
    written["pareto"] = pareto_figure(frame, front, objectives, out / "pareto.png")
    return written
