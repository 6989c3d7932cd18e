"""What a sweep reports when it ends: how many jobs were ok, failed and skipped, and why.

Jobs of a sweep never stop one another (a failing job records ``failed`` in its results.json and returns); this
Hydra callback reads every job's results.json once the launcher is done, whatever launcher ran them, prints the
counts, and turns any failure into a non-zero exit of the sweep.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from llm_adapters.files import read_results
from llm_adapters.job.axes import settings
from llm_adapters.job.resume import cell_key
from llm_adapters.locks import live, lock
from llm_adapters.stats.power import family, study_line

log = logging.getLogger(__name__)


def summarise(sweep_dir: Path) -> tuple[Counter, list[str]]:
    """Status counts of the jobs Hydra launched under a sweep directory (every job directory, with or without a
    results.json), and one line per job that did not end ``ok``. A job with no final record (it died before
    writing one, or was killed while ``running``) is failed; one that another job continued to the end is
    ``superseded``."""
    counts: Counter = Counter()
    notes = []
    jobs = {p.parent for p in sweep_dir.glob("*/results.json")} | {p.parent for p in sweep_dir.glob("*/.hydra")}
    # Job directories start with the job number: order them by it, not as strings.
    for job in sorted(jobs, key=lambda p: (len(p.name.split("_")[0]), p.name)):
        results = read_results(job / "results.json") if (job / "results.json").is_file() else None
        if results is None or results.get("status") not in ("ok", "failed", "skipped", "superseded", "pruned"):
            why = "no results.json" if not (job / "results.json").is_file() else "no final record"
            if results is not None and results.get("status") == "running":
                why = "still marked running (killed?)"
            counts["failed"] += 1
            notes.append(f"  failed: {job.name}: {why}")
            continue
        counts[results["status"]] += 1
        if results["status"] != "ok":
            why = results.get("reason")
            if results["status"] == "superseded":
                why = f"continued to the end by {results.get('superseded_by')}"
            notes.append(f"  {results['status']}: {job.name}: {why}")
    return counts, notes


def plan_table(sweep_dir: Path) -> tuple[str | None, list[str]]:
    """The plan.json files of a ``mode=plan`` sweep as one table, in job order, and a line for each job that was
    skipped (its reason) or failed (no plan.json: its run.log says why)."""
    rows, plans, notes = [], [], []
    jobs = sorted({p.parent for p in sweep_dir.glob("*/.hydra")}, key=lambda p: (len(p.name.split("_")[0]), p.name))
    for job in jobs:
        path = job / "plan.json"
        plan = json.loads(path.read_text()) if path.is_file() else {"status": "failed"}
        if plan.get("status", "ok") != "ok":
            why = plan.get("reason") or _last_error(job / "run.log") or "no plan.json"
            notes.append(f"  {plan['status']}: {job.name}: {why}")
            continue
        plans.append(plan)
        rows.append(
            {
                "model": plan["model"],
                "adapter": plan["adapter"],
                "placement": plan["placement"] or "-",
                "trainable": f"{plan['params']['trainable']:,}",
                "total": f"{plan['params']['total']:,}",
                "trainable %": f"{plan['params']['trainable_pct']:.4f}",
                "memory GiB": f"{plan['memory_gb']['total']:.1f}",
            }
        )
    import pandas as pd  # only a sweep's end needs it

    return (f"{pd.DataFrame(rows).to_string(index=False)}\n{power_line(plans)}" if rows else None), notes


def _last_error(log_file: Path) -> str | None:
    """The reason a job logged for failing (``run.py``'s "job failed: ..." line), if its log has one."""
    lines = log_file.read_text(errors="replace").splitlines() if log_file.is_file() else []
    return next((line.split("job failed: ", 1)[1] for line in reversed(lines) if "job failed: " in line), None)


def power_line(plans: list[dict[str, Any]]) -> str:
    """The study's power (``llm_adapters.stats.power``): its cells are the jobs' config hashes less the seed (so the
    frozen base swept over placements is one cell, as it is one job), its pairs those ``power.by`` allows, its seeds
    the distinct seeds, its questions those of the first job's sets."""
    cells: dict[str, dict[str, Any]] = {}
    for plan in plans:
        cells.setdefault(cell_key(plan["config"]), plan["config"])
    given = plans[0]["config"].get("power")
    by = family(given)
    pairs = sum(by is None or differs_only_in(a, b, by) for a, b in itertools.combinations(cells.values(), 2))
    seeds = len({p["config"]["seed"] for p in plans})
    return study_line(len(cells), pairs, seeds, plans[0]["eval_questions"], given)


def differs_only_in(a: dict[str, Any], b: dict[str, Any], key: str) -> bool:
    """Whether two resolved configs differ in ``key`` (a dotted path: ``placement``, ``train.lr``) and in nothing
    outside it, compared as the analysis tells cells apart (``axes.settings``)."""
    left, right = settings(a), settings(b)
    differ = {k.removeprefix("cfg/") for k in left.keys() | right.keys() if left.get(k, "-") != right.get(k, "-")}
    return bool(differ) and all(k == key or k.startswith(f"{key}.") for k in differ)


SWEEP_LOCK = ".sweep-running"  # in a sweep directory while a sweep runs there: its host and process id


class SweepSummary(Callback):
    """Holds the sweep directory for one sweep at a time; at the end prints the sweep's outcome and exits with
    status 1 when any job failed.

    A second sweep into a directory where one is running is refused in one line (exit 2), before any job: the end
    summary reads every job folder of the directory, which must all be this sweep's (a rerun of a finished or killed
    sweep is welcome: it is the same study continued)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if live(sweep_dir, SWEEP_LOCK):
            held = (sweep_dir / SWEEP_LOCK).read_text().strip()
            print(
                f"error: a sweep is running in {sweep_dir} now ({held}): choose another hydra.sweep.dir, or remove "
                f"{sweep_dir / SWEEP_LOCK} if no sweep runs there",
                file=sys.stderr,
            )
            sys.exit(2)
        lock(sweep_dir, SWEEP_LOCK)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        (sweep_dir / SWEEP_LOCK).unlink(missing_ok=True)
        if config.get("mode") == "plan":
            table, notes = plan_table(sweep_dir)
            for line in ([table] if table else []) + ([f"{len(notes)} job(s) not planned:"] if notes else []) + notes:
                print(line)
            if any(note.startswith("  failed") for note in notes):
                raise SystemExit(1)
            return
        counts, notes = summarise(sweep_dir)
        total = sum(counts.values())
        print(
            f"sweep {sweep_dir}: {total} jobs, {counts['ok']} ok, {counts['failed']} failed, "
            f"{counts['skipped']} skipped" + (f", {counts['pruned']} pruned" if counts["pruned"] else "")
        )
        for note in notes:
            print(note)
        if counts["failed"]:
            raise SystemExit(1)
