"""Recognising work already done: the config hash of a job, and the scan for an earlier job that had the same one.

Two configs that differ only in where things are stored or logged are the same experiment; so are an adapter that
takes no placement under two placements, and the frozen base model under two seeds. A job whose hash matches an
earlier ``ok`` job is not run again; one whose hash matches a job that stopped early continues from its newest
checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_adapters import __version__, adapters, files
from llm_adapters.adapters import saving
from llm_adapters.errors import ConfigError
from llm_adapters.locks import LOCK, live
from llm_adapters.training.checkpoint import latest_checkpoint

# Keys that say where things are stored or logged, not what is computed: two configs differing only here are the
# same experiment.
_NOT_THE_EXPERIMENT = ("logger", "paths", "power", "search")  # power: plan mode's; search: where a trial reports


# Keys added after studies were committed, at the value that changes nothing: left out of the hash then, so that
# adding one does not make every committed job run again. (group, key, that value)
NEUTRAL_WHEN_UNSET = (
    ("train", "loraplus_ratio", None),
    ("adapter", "init", "default"),
    ("dataset", "answer_format", "label"),
)


def config_hash(resolved: dict[str, Any], data: Mapping[str, Any] | None = None) -> str:
    """A digest of everything that decides a job's numbers (seed included; ``data``: the fingerprint of the files
    it reads), to recognise a job already done. The same files elsewhere give the same hash; changed files do not."""
    kept = {k: v for k, v in resolved.items() if k not in _NOT_THE_EXPERIMENT}
    kept["data"] = dict(data or {})
    kept["train"] = {k: v for k, v in kept["train"].items() if k != "resume"}
    for group, key, neutral in NEUTRAL_WHEN_UNSET:  # a key added later, at its default: the jobs' hash before it
        if group in kept and key in kept[group] and kept[group][key] == neutral:
            kept[group] = {k: v for k, v in kept[group].items() if k != key}
    kind = kept["adapter"]["kind"]
    if not adapters.spec(kind).placed:  # a placement it ignores: a sweep over placements runs it once, not once each
        kept.pop("placement")
    if kind == "none" and kept["mode"] == "train":  # the frozen base, evaluated: no training, nothing random
        kept.pop("train")
        kept.pop("seed")
    kept["llm_adapters"] = __version__  # bump the version when a change alters results, and old jobs rerun
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cell_key(resolved: dict[str, Any]) -> str:
    """The config hash with the seed set aside: the jobs of one table cell share it (and a sweep's copies of a job
    that ignores an axis, such as the frozen base over placements, are one cell, as they are one job)."""
    return config_hash({**resolved, "seed": None})


@dataclass
class Earlier:
    """What earlier jobs of one config hash left, from one scan of the resume roots and the job's own directory:
    another that ended ``ok``; another running now (never resumed from or duplicated while it lives); the newest
    checkpoint of one that stopped early (killed, preempted, failed); one whose adapter was saved complete although
    it did not end ``ok`` (killed or failed while evaluating: its adapter is evaluated instead of training again)."""

    done: Path | None = None
    running: Path | None = None
    checkpoint: Path | None = None
    trained: Path | None = None


def earlier_work(digest: str, roots: list[str], job_dir: Path) -> Earlier:
    """Earlier jobs with this config hash (see ``Earlier``); the job's own directory is scanned too, so a job rerun
    in place (a requeued SLURM job, a study rerun into its fixed sweep directory) continues where it stopped."""
    found, newest_step, here = Earlier(), -1, job_dir.resolve()
    for root in dict.fromkeys([*roots, str(job_dir)]):
        for path in Path(root).rglob("results.json"):
            earlier = files.read_results(path)
            if earlier is None or earlier.get("config_hash") != digest:
                continue
            status, elsewhere, alive = earlier.get("status"), path.parent.resolve() != here, live(path.parent)
            if status == "ok":
                found.done = path.parent if elsewhere else found.done
                continue
            if status == "running" and elsewhere and alive:
                found.running = path.parent
            if _trained_here(path.parent, digest, earlier):
                found.trained = path.parent
            latest = None if alive else latest_checkpoint(path.parent / "checkpoints")
            if latest is not None and (step := int(latest.name.removeprefix("step-"))) > newest_step:
                found.checkpoint, newest_step = latest, step
    if found.trained is None and not (job_dir / "results.json").is_file() and _trained_here(job_dir, digest, None):
        found.trained = job_dir  # its record lost: the adapter says whose training it is
    return found


def _trained_here(job_dir: Path, digest: str, record: Mapping[str, Any] | None) -> bool:
    """Whether ``job_dir`` holds a complete adapter trained by a job of config hash ``digest``: the adapter says so
    (it records the hash), or, for one saved before adapters did, the job's record names its finished training."""
    if (own := saving.job_record(job_dir / "adapter")) is not None:
        return own.get("config_hash") == digest and bool((own.get("train") or {}).get("steps"))
    saved = (job_dir / "adapter" / "adapter_config.json").is_file()
    return saved and bool(((record or {}).get("train") or {}).get("steps"))


def training_record(job_dir: Path, digest: str) -> dict[str, Any]:
    """The training record of the finished adapter in ``job_dir`` (``_trained_here``), as a job that evaluates it
    records it: the adapter's own (else its job's results.json's) and where the adapter was reused from."""
    own = saving.job_record(job_dir / "adapter")
    train = own["train"] if own is not None and own.get("config_hash") == digest else None
    train = train or files.read_results(job_dir / "results.json")["train"]
    return {**train, "reused_adapter": files.shown(job_dir)}


def roots_of(value: Any) -> list[str]:
    """``paths.resume_search`` as a list of directories: a single path given as a string is one root (not its
    characters)."""
    return [value] if isinstance(value, str | Path) else [str(root) for root in value]


def holds_work(job_dir: Path) -> dict[str, Any] | None:
    """The record of ``job_dir`` when the directory holds work worth keeping (a finished job, checkpoints, a saved
    adapter), else None: a record that a job about to start there must not overwrite."""
    path = job_dir / "results.json"
    record = files.read_results(path) if path.is_file() else None
    work = (record or {}).get("status") == "ok" or latest_checkpoint(job_dir / "checkpoints") is not None
    work = work or (job_dir / "adapter" / "adapter_config.json").is_file()
    if not work:
        return None
    if record is None and (adapter := saving.job_record(job_dir / "adapter")) is not None:
        return {"status": "unknown (no results.json)", "config_hash": adapter.get("config_hash")}
    return record or {"status": "unknown", "config_hash": None}


def claim(job_dir: Path, digest: str, resume: bool) -> None:
    """Check that a job of config hash ``digest`` may work in ``job_dir``, before it writes anything there.

    Refused, in one line: a directory where a job is running now, and one holding the work of another configuration
    (its finished record, its checkpoints or its adapter), which would be overwritten or, worse, resumed as this
    job's. With ``train.resume=false`` the job starts over: this configuration's own checkpoints there are removed.
    """
    if live(job_dir):
        raise ConfigError(
            f"a job is running in {job_dir} now ({(job_dir / LOCK).read_text().strip()}): choose another "
            f"hydra.run.dir, or remove {job_dir / LOCK} if no job runs there"
        )
    earlier = holds_work(job_dir)
    if earlier is not None and earlier.get("config_hash") is None:
        held = [name for name in ("checkpoints", "adapter", "results.json") if (job_dir / name).exists()]
        raise ConfigError(
            f"{job_dir} holds work whose configuration cannot be told ({', '.join(held)}; no record names its "
            "config hash): evaluate its adapter with mode=eval adapter_path=<it>/adapter, move it away, or choose "
            "another hydra.run.dir"
        )
    if earlier is not None and earlier.get("config_hash") != digest:
        raise ConfigError(
            f"{job_dir} holds the work of another configuration (config hash {earlier.get('config_hash')}, status "
            f"{earlier.get('status')}), which this job would overwrite: choose another hydra.run.dir"
        )
    if not resume:
        shutil.rmtree(job_dir / "checkpoints", ignore_errors=True)


def completed_here(job_dir: Path, digest: str) -> dict[str, Any] | None:
    """This directory's own ``ok`` record for the same experiment (a job rerun in place after it finished)."""
    path = job_dir / "results.json"
    own = files.read_results(path) if path.is_file() else None
    return own if own is not None and own.get("config_hash") == digest and own.get("status") == "ok" else None


def supersede(earlier: Path, job_dir: Path) -> None:
    """Once a job that continued another's work (its checkpoint, or its finished adapter) has ended ``ok``: mark that
    earlier job ``superseded`` (naming this one) and delete its checkpoints, tens of GB for full fine-tuning."""
    if earlier.resolve() == job_dir.resolve():
        return
    record = files.read_results(earlier / "results.json") if (earlier / "results.json").is_file() else None
    if record is not None:
        files.write_json(earlier / "results.json", {**record, "status": "superseded", "superseded_by": str(job_dir)})
    shutil.rmtree(earlier / "checkpoints", ignore_errors=True)
