"""Recognising work already done: the config hash of a job, and the scan for an earlier job that had the same one.

Two configs that differ only in where things are stored or logged are the same experiment; so are an adapter that
takes no placement under two placements, and the frozen base model under two seeds. A job whose hash matches an
earlier ``ok`` job is not run again; one whose hash matches a job that stopped early continues from its newest
checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llm_adapters import __version__, adapters, checkpoint, files

# Keys that say where things are stored or logged, not what is computed: two configs differing only here are the
# same experiment.
_NOT_THE_EXPERIMENT = ("logger", "paths")


Fingerprint = dict[str, dict[str, Any]]  # per data file: {"size": bytes, "sha256": hex digest}


def fingerprint(located: Mapping[str, Path]) -> Fingerprint:
    """Size and SHA-256 of each data file a job reads: what its numbers depend on, wherever the files are."""
    return {name: {"size": path.stat().st_size, "sha256": files.sha256(path)} for name, path in located.items()}


def config_hash(resolved: dict[str, Any], data: Mapping[str, Any] | None = None) -> str:
    """A digest of everything that decides a job's numbers (seed included; ``data``: the fingerprint of the files
    it reads), to recognise a job already done. The same files elsewhere give the same hash; changed files do not."""
    kept = {k: v for k, v in resolved.items() if k not in _NOT_THE_EXPERIMENT}
    kept["data"] = dict(data or {})
    kept["train"] = {k: v for k, v in kept["train"].items() if k != "resume"}
    kind = kept["adapter"]["kind"]
    if not adapters.spec(kind).placed:  # a placement it ignores: a sweep over placements runs it once, not once each
        kept.pop("placement")
    if kind == "none" and kept["mode"] == "train":  # the frozen base, evaluated: no training, nothing random
        kept.pop("train")
        kept.pop("seed")
    kept["llm_adapters"] = __version__  # bump the version when a change alters results, and old jobs rerun
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def find_earlier(digest: str, roots: list[str], job_dir: Path) -> tuple[Path | None, Path | None]:
    """Earlier jobs with this config hash: the directory of another one that ended ``ok``, and the newest checkpoint
    left by one that did not finish (killed, preempted or failed; not one still running) — this job's own directory
    included, so a job rerun in place (a requeued SLURM job, a study rerun into its fixed sweep directory) continues
    where it stopped."""
    done, newest, newest_step = None, None, -1
    for root in [*roots, job_dir]:
        for path in Path(root).rglob("results.json"):
            earlier = files.read_results(path)
            if earlier is None or earlier.get("config_hash") != digest:
                continue
            if earlier.get("status") == "ok" and path.parent.resolve() != job_dir.resolve():
                done = path.parent
            elif not live(path.parent) and (found := checkpoint.latest(path.parent / "checkpoints")) is not None:
                step = int(found.name.removeprefix("step-"))
                if step > newest_step:
                    newest, newest_step = found, step
    return done, newest


LOCK = ".running"  # beside a live job's results.json: its host and process id


def lock(job_dir: Path) -> Path:
    """Mark ``job_dir`` as the directory of a live job (removed when the job ends; stale once its process is gone)."""
    path = job_dir / LOCK
    path.write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return path


def live(job_dir: Path) -> bool:
    """Whether a job is running in ``job_dir`` now: its lock names a process that still exists (on this host; a lock
    from another host counts as live, as it cannot be checked from here)."""
    path = job_dir / LOCK
    try:
        host, pid = path.read_text().split()
    except (OSError, ValueError):
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_elsewhere(digest: str, roots: list[str], job_dir: Path) -> Path | None:
    """Another live job with this config hash: never resumed from or duplicated while it runs."""
    for root in roots:
        for path in Path(root).rglob("results.json"):
            earlier = files.read_results(path)
            if earlier is None or earlier.get("config_hash") != digest or earlier.get("status") != "running":
                continue
            if path.parent.resolve() != job_dir.resolve() and live(path.parent):
                return path.parent
    return None


def completed_here(job_dir: Path, digest: str) -> dict[str, Any] | None:
    """This directory's own ``ok`` record for the same experiment (a job rerun in place after it finished)."""
    path = job_dir / "results.json"
    own = files.read_results(path) if path.is_file() else None
    return own if own is not None and own.get("config_hash") == digest and own.get("status") == "ok" else None


def trained_elsewhere(digest: str, roots: list[str], job_dir: Path) -> Path | None:
    """An earlier job with this config hash whose adapter was saved complete (training finished) although the job
    did not end ``ok`` (killed or failed while evaluating): its adapter is evaluated instead of training again."""
    for root in [*roots, job_dir]:
        for path in Path(root).rglob("results.json"):
            earlier = files.read_results(path)
            if earlier is None or earlier.get("config_hash") != digest or earlier.get("status") == "ok":
                continue
            adapter = path.parent / "adapter"
            if (adapter / "adapter_config.json").is_file() and (earlier.get("train") or {}).get("steps"):
                return path.parent
    return None


def supersede(earlier: Path, job_dir: Path) -> None:
    """Once a job that continued another's work (its checkpoint, or its finished adapter) has ended ``ok``: mark that
    earlier job ``superseded`` (naming this one) and delete its checkpoints, tens of GB for full fine-tuning."""
    if earlier.resolve() == job_dir.resolve():
        return
    record = files.read_results(earlier / "results.json") if (earlier / "results.json").is_file() else None
    if record is not None:
        files.write_json(earlier / "results.json", {**record, "status": "superseded", "superseded_by": str(job_dir)})
    shutil.rmtree(earlier / "checkpoints", ignore_errors=True)
