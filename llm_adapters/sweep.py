"""What a sweep reports when it ends: how many jobs were ok, failed and skipped, and why.

Jobs of a sweep never stop one another (a failing job records ``failed`` in its results.json and returns); this
Hydra callback reads every job's results.json once the launcher is done, whatever launcher ran them, prints the
counts, and turns any failure into a non-zero exit of the sweep.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from llm_adapters.axes import settings
from llm_adapters.files import read_results
from llm_adapters.power import family, study_line
from llm_adapters.resume import cell_key

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


def plan_table(sweep_dir: Path) -> str | None:
    """The plan.json files of a ``mode=plan`` sweep as one table, in job order."""
    rows, plans = [], []
    for path in sorted(sweep_dir.glob("*/plan.json"), key=lambda p: int(p.parent.name.split("_")[0])):
        plan = json.loads(path.read_text())
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

    return f"{pd.DataFrame(rows).to_string(index=False)}\n{power_line(plans)}" if rows else None


def power_line(plans: list[dict[str, Any]]) -> str:
    """The study's power (``llm_adapters.power``): its cells are the jobs' config hashes less the seed (so the
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


class SweepSummary(Callback):
    """Prints the sweep's outcome and exits with status 1 when any job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = plan_table(sweep_dir)
        if table is not None:
            print(table)
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
