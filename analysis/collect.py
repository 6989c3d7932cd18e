"""Every job's results.json under some directories, as one pandas DataFrame (one row per job, failed and skipped
jobs included, never dropped)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from llm_adapters.files import read_results
from llm_adapters.job.axes import axes_of, job_axes, settings

log = logging.getLogger(__name__)


def row(results: Mapping[str, Any], job: str) -> dict[str, Any]:
    """One job's row: its setting, status, parameter share and per-set accuracy (``acc/<set>``, ``n/<set>``)."""
    config = results.get("config", {})
    axes = axes_of(results)
    out: dict[str, Any] = {
        "job": job,
        "status": results.get("status"),
        "reason": results.get("reason"),
        "model": axes["model"],
        "adapter": axes["adapter"],
        "placement": axes["placement"],
        "size": axes["size"],
        "train_set": axes["dataset"],
        "method": axes.get("method", "generate"),
        "seed": axes["seed"],
        "protocol": (results.get("protocol") or {}).get("name"),
        "mode": results.get("mode", "train"),
        "evaluated": config.get("adapter_path"),  # mode=eval: the adapter it re-evaluated (a row of its own)
        "trainable": (results.get("params") or {}).get("trainable"),
        "trainable_pct": (results.get("params") or {}).get("trainable_pct"),
    }
    out |= settings(config)
    out |= {f"data/{name}": (digest or {}).get("sha256") for name, digest in (results.get("data") or {}).items()}
    for name, metrics in (results.get("eval") or {}).items():
        out[f"acc/{name}"] = metrics["accuracy"]
        out[f"accn/{name}"] = metrics.get("accuracy_norm")  # eval.method=loglik: acc_norm
        out[f"n/{name}"] = metrics["n"]
        out[f"top/{name}"] = metrics.get("top_answer_pct")  # share of the most frequent answer (a collapsed model)
    return out


def _reused(recorded: Path, sweep_dir: Path) -> Path | None:
    """The job a skipped or superseded one points to: as recorded (absolute, or relative to the working directory),
    else by its name in the same sweep directory (a study cloned, moved, or read from another folder)."""
    for job in (recorded, sweep_dir / recorded.name):
        if (job / "results.json").is_file() and read_results(job / "results.json") is not None:
            return job
    return None


def load(directories: Iterable[Path]) -> pd.DataFrame:
    """All results.json files below the directories, in path order. A job skipped because an earlier one had done
    the same work (``reused_from``) stands for that job's result, counted once however many reuse it: a rerun
    sweep's directory is the whole study. One experiment is one sample: of several finished records with the same
    config hash (a job and copies of it run in other directories, or the same job with its files elsewhere) the
    first in path order is kept, and the others are named in a warning, never pooled as if they were seeds."""
    rows: dict[str, dict[str, Any]] = {}
    kept: dict[str, str] = {}  # config hash of an ok record → the job kept for it
    repeats: list[str] = []
    for directory in directories:
        for path in sorted(Path(directory).rglob("results.json")):
            results = read_results(path)
            if results is None:
                continue
            job = str(path.parent)
            status = results.get("status")  # a reused or continued job stands for the job that holds its result
            reused = results.get({"skipped": "reused_from", "superseded": "superseded_by"}.get(status, ""))
            if reused and (found := _reused(Path(reused), path.parent.parent)) is not None:
                results, job = read_results(found / "results.json"), str(found)
            key = str(Path(job).resolve())
            digest = results.get("config_hash") if results.get("status") == "ok" else None
            if key not in rows and digest is not None and kept.setdefault(digest, job) != job:
                repeats.append(f"{job} (the same experiment as {kept[digest]})")
                continue
            rows.setdefault(key, row(results, job))
    if repeats:
        log.warning("left out %d record(s) repeating an experiment already read: %s", len(repeats), "; ".join(repeats))
    return pd.DataFrame(list(rows.values()))


def results_from_wandb(config: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """A W&B run (its config and the summary ``tracking.wandb_summary`` wrote) in results.json's shape."""
    evals: dict[str, dict[str, Any]] = {}
    for key, value in summary.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "eval":
            evals.setdefault(parts[1], {})["accuracy" if parts[2] == "accuracy" else parts[2]] = value
    return {
        "status": summary.get("status"),
        "reason": summary.get("reason"),
        "axes": config.get("axes") or job_axes(config),
        "protocol": config["protocol"],
        "config": config,
        "params": {k.removeprefix("params/"): v for k, v in summary.items() if k.startswith("params/")},
        "eval": evals,
    }


def from_wandb(project: str) -> pd.DataFrame:
    """Every run of a W&B project (``entity/project``), read through the W&B API."""
    import wandb

    runs = wandb.Api().runs(project)
    return pd.DataFrame([row(results_from_wandb(dict(r.config), dict(r.summary)), r.url) for r in runs])


class NoResults(Exception):
    """What an analysis was given holds no job to analyse (a directory that does not exist, or has no results.json
    below it; a jobs.csv that is not one): said in one line, exit 2."""


def load_existing(directories: Iterable[Path]) -> pd.DataFrame:
    """``load``, refusing in one line a directory that does not exist and directories with no job below them."""
    directories = list(directories)
    if missing := [str(d) for d in directories if not Path(d).is_dir()]:
        raise NoResults(f"{missing[0]} does not exist (or is not a directory)")
    df = load(directories)
    if df.empty:
        raise NoResults(f"no results under {', '.join(map(str, directories))} (no results.json below it)")
    return df


JOBS_COLUMNS = ("job", "status", "model", "adapter", "seed")  # what a table needs of every row, with acc/ and n/


def from_jobs_csv(path: Path) -> pd.DataFrame:
    """An earlier ``jobs.csv`` of ``python -m analysis tables``, read back: how a study whose results.json files were
    never kept is tabled again. Where its job directories still hold predictions.jsonl the cells are bootstrapped
    as usual; where not, each cell gets the Wilson interval of its pooled counts (``acc/<set>`` × ``n/<set>``) and
    no paired comparison can be made."""
    if not path.is_file():
        raise NoResults(f"--jobs {path}: no such file")
    df = pd.read_csv(path)
    missing = [c for c in JOBS_COLUMNS if c not in df]
    if not any(c.startswith("acc/") for c in df):
        missing.append("acc/<set>")
    if missing:
        raise NoResults(f"--jobs {path}: not a jobs.csv of python -m analysis tables (no {missing[0]} column)")
    return df
