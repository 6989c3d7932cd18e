"""What a job says about itself beyond its numbers: the package versions and the code's commit that go into
results.json (written by ``recipe`` through ``files.write_json``), and its Weights & Biases run: started offline
by default, its summary and a sample of its predictions."""

from __future__ import annotations

import logging
import platform
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from llm_adapters.evaluation.methods import method
from llm_adapters.job.axes import axes_of

log = logging.getLogger(__name__)

_PACKAGES = ("torch", "transformers", "tokenizers", "hydra-core", "omegaconf", "wandb", "safetensors", "llm-adapters")


def versions() -> dict[str, str | None]:
    """Python and the versions of the packages that decide the numbers."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit() -> str | None:
    """The commit of this code, with ``-dirty`` when the work tree has uncommitted changes; None outside git."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def start_wandb(cfg: Mapping, resolved_config: Mapping, job_dir: Path, group: str | None, tags: list[str]) -> Any:
    """One W&B run per job, its files inside the job directory. ``mode`` is offline by default (sync later with
    ``wandb sync``), ``online`` for live dashboards, ``disabled`` for none (a run object whose calls do nothing).

    When W&B cannot start (no network, a bad key), the job warns once and goes on without it: a dashboard is never
    worth losing a run over. wandb is imported here, where a run starts: the light commands never pay for it.
    """
    import wandb

    try:
        return wandb.init(
            project=cfg.get("project"),
            entity=cfg.get("entity"),
            mode=cfg["mode"],
            group=group,
            job_type=cfg.get("job_type"),
            tags=tags,
            name=job_dir.name,
            dir=str(job_dir),
            config=dict(resolved_config),
            reinit="finish_previous",
            settings=wandb.Settings(silent=True, console="off", init_timeout=float(cfg.get("init_timeout", 90))),
        )
    except Exception as error:
        first_line = (str(error).splitlines() or [""])[0]
        log.warning("W&B could not start (%s: %s); this job goes on without it", type(error).__name__, first_line)
        return wandb.init(mode="disabled")


def wandb_summary(results: Mapping[str, Any]) -> dict[str, Any]:
    """What a job's W&B summary holds: status, parameter counts, and each set's n and the accuracies its evaluation
    method declares (``Method.metrics``). ``analysis.collect.from_wandb`` reads it back into the shape of
    results.json."""
    summary: dict[str, Any] = {"status": results["status"], "reason": results.get("reason")}
    summary |= {f"params/{k}": v for k, v in (results.get("params") or {}).items()}
    declared = method(axes_of(results).get("method") or "generate").metrics
    for name, metrics in (results.get("eval") or {}).items():
        summary |= {f"eval/{name}/{key}": metrics[key] for key in declared if key in metrics}
        summary[f"eval/{name}/n"] = metrics["n"]
        if metrics.get("interval"):  # the 95% interval over the questions (Wilson), in percent
            summary[f"eval/{name}/interval_low"], summary[f"eval/{name}/interval_high"] = metrics["interval"]
        if "top_answer_pct" in metrics:
            summary[f"eval/{name}/top_answer_pct"] = metrics["top_answer_pct"]
    return summary


def log_predictions(run: Any, rows: list[Mapping[str, Any]], n: int, fields: Sequence[str]) -> None:
    """The first ``n`` predictions as a W&B table, to read answers beside the numbers: the ``fields`` the job's
    evaluation method declares its rows have (``Method.row_fields``): a yes/no as itself, everything else as text
    (a column W&B types by its first row must not mix numbers, None and text, as extracted answers do)."""
    if n <= 0 or not rows:
        return
    import wandb

    def cell(value: Any) -> Any:
        return value if isinstance(value, bool) else str(value)

    data = [[cell(row[field]) for field in fields] for row in rows[:n]]
    run.log({"predictions": wandb.Table(columns=list(fields), data=data)})
