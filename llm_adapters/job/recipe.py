"""One job, top to bottom: data → model → adapter → train → save → evaluate → results.json.

``run`` is the whole recipe as a plain function over the resolved config; each step is a phase (``phases``) that
returns what it made, recorded here as soon as it exists. Whatever happens, the job leaves a results.json (``ok``,
``skipped``, or ``failed`` with the reason) and closes its W&B run with a matching exit code.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from llm_adapters import files, locks
from llm_adapters.adapters import budget, saving
from llm_adapters.adapters.placement import PlacementError
from llm_adapters.data import loading
from llm_adapters.data.checksums import fingerprint
from llm_adapters.evaluation import method
from llm_adapters.job import phases, resume, tracking
from llm_adapters.job.axes import job_axes
from llm_adapters.job.config import ConfigError, validate
from llm_adapters.model.loading import resolve_device
from llm_adapters.search import pruning
from llm_adapters.training import distributed

log = logging.getLogger(__name__)
AXES = ("model", "adapter", "placement", "dataset", "seed")  # also top-level keys of results.json


def opening_record(cfg: DictConfig) -> dict[str, Any]:
    """What results.json says of a job before it does anything: its setting, its axes, its config and hash."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    axes = job_axes(resolved)
    return {
        "status": "running",
        "reason": None,
        "mode": cfg.mode,
        **{key: axes[key] for key in AXES},
        "axes": axes,
        "protocol": resolved["protocol"],
        "config_hash": None,  # once the data files are found: their fingerprint is part of it
        "config": resolved,
        "versions": tracking.versions(),
        "git_commit": tracking.git_commit(),
    }


RESULTS = "results.json"


def _end_early(results: dict[str, Any], job_dir: Path, status: str, reason: str, **extra: Any) -> dict[str, Any]:
    """Record a job that stops before any work: ``skipped`` (nothing to do) or ``failed`` (bad input); never over
    a directory's earlier work (a finished record, checkpoints, an adapter), which stays as it was."""
    results.update(status=status, reason=reason, **extra)
    record = job_dir / RESULTS
    before = (files.read_results(record) if record.is_file() else None) or {}
    keys = ("status", "reason", "config_hash")
    same = results["config_hash"] is not None and all(before.get(key) == results[key] for key in keys)
    if resume.holds_work(job_dir) is None and not same:  # a rerun leaves the same skip's record (and git) alone
        files.write_json(record, results)
    if status == "skipped":
        log.warning("skipped: %s", reason)
    return results


def _earlier_work(
    cfg: DictConfig, results: dict[str, Any], job_dir: Path, sweep: bool
) -> tuple[dict | None, resume.Earlier]:
    """What earlier jobs of this experiment decide (``train.resume``): the record to return when there is nothing
    to do (done here or elsewhere, or running now elsewhere), and what this job continues from. A sweep's job also
    searches its own sweep directory, wherever that is (``paths.resume_search`` or not)."""
    digest = results["config_hash"]
    if cfg.train.resume and (own := resume.completed_here(job_dir, digest)) is not None:
        log.warning("skipped: already completed in this directory, %s", files.shown(job_dir))  # its record stays
        return own, resume.Earlier()
    resume.claim(job_dir, digest, cfg.train.resume)  # before anything is written here
    if not cfg.train.resume:
        return None, resume.Earlier()
    roots = resume.roots_of(cfg.paths.resume_search) + ([str(job_dir.parent)] if sweep else [])
    earlier = resume.earlier_work(digest, roots, job_dir)
    if earlier.running is not None:
        return _end_early(
            results, job_dir, "skipped", f"the same experiment is running now in {files.shown(earlier.running)}"
        ), earlier
    if earlier.done is not None:
        done = files.shown(earlier.done)
        return _end_early(results, job_dir, "skipped", f"already completed in {done}", reused_from=done), earlier
    return None, earlier


def run(cfg: DictConfig, job_dir: Path, group: str | None = None, sweep: bool = False) -> dict[str, Any]:
    """Fine-tune and evaluate one adapter as ``cfg`` says; returns what it wrote to ``job_dir/results.json``.

    A job whose config hash matches an earlier ``ok`` job under ``resume_search`` is skipped (``train.resume``).
    In a sweep (``sweep=True``) a combination that has no meaning is recorded as skipped; alone, it is an error.
    ``cfg`` has its study's patches applied already (``run.py`` applies them once, where it saves the config).
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    results = opening_record(cfg)
    try:
        validate(cfg)
        cfg = budget.apply(cfg)  # +budget: the adapter's size solved for a parameter count, before it is recorded
        results = opening_record(cfg)
        located = loading.data_files(cfg)
    except ValueError as error:  # ConfigError, DataError, or a PlacementError: a combination that has no meaning
        if sweep and isinstance(error, PlacementError):
            return _end_early(results, job_dir, "skipped", str(error))
        _end_early(results, job_dir, "failed", f"{type(error).__name__}: {error}")
        raise
    results["data"] = fingerprint(located)
    results["config_hash"] = resume.config_hash(results["config"], results["data"])
    ended, earlier = _earlier_work(cfg, results, job_dir, sweep)
    if ended is not None:
        return ended
    trained, resume_from, trained_record = earlier.trained, earlier.checkpoint, None
    if trained is not None:  # read now: when it is this directory, the record written below replaces it
        trained_record = resume.training_record(trained, results["config_hash"])
    files.write_json(job_dir / RESULTS, results)  # "running": a killed job leaves this behind
    dist = distributed.setup()
    running = locks.lock(job_dir) if dist.main else None  # no other job resumes from this one while it lives
    logger_cfg = cfg.logger if dist.main else {"mode": "disabled"}  # one W&B run per job, from rank 0
    tags = [f"{key}:{results['axes'][key]}" for key in (*AXES[:-1], "method")]
    # The axes as a block of their own, so a W&B workspace groups and filters by them directly.
    wandb_run = tracking.start_wandb(logger_cfg, {"axes": results["axes"], **results["config"]}, job_dir, group, tags)
    start = time.perf_counter()
    try:
        job = phases.Job(cfg, job_dir, dist.device(resolve_device(cfg.device)), dist, results["config_hash"])
        _recipe(job, results, wandb_run, resume_from, located, trained, trained_record)
        results["status"] = "ok"
        if (earlier := trained or (resume_from.parent.parent if resume_from else None)) is not None and dist.main:
            resume.supersede(earlier, job_dir)
    except BaseException as error:
        skipped = sweep and isinstance(error, PlacementError)  # the model's family has no module the kind takes
        ended = "pruned" if isinstance(error, pruning.Pruned) else "skipped" if skipped else "failed"
        results["status"] = ended
        results["reason"] = f"{type(error).__name__}: {error}" if ended == "failed" else str(error)
        if ended == "failed":
            raise
        log.warning("%s: %s", ended, error)
    finally:
        results["seconds"] = time.perf_counter() - start
        try:
            files.write_json(job_dir / RESULTS, results)
        except OSError as error:  # a full disk: the failure it is reporting matters more than this record
            log.error("results.json could not be written: %s", error)
        if running is not None:
            running.unlink(missing_ok=True)
        wandb_run.summary.update(tracking.wandb_summary(results))
        wandb_run.finish(exit_code=0 if results["status"] == "ok" else 1)
    return results


def _recipe(
    job: phases.Job,
    results: dict[str, Any],
    wandb_run: Any,
    resume_from: Path | None,
    located: dict[str, Path],
    trained: Path | None = None,
    trained_record: dict[str, Any] | None = None,
) -> None:
    """The phases in order, each one's result recorded in ``results`` as soon as it exists. ``trained``: an earlier
    job of this experiment whose adapter is complete: it is evaluated, with that job's training record."""
    cfg, dist = job.cfg, job.dist
    phases.set_seed(cfg.seed)
    micro_batches = cfg.train.batch_size // cfg.train.micro_batch_size
    if (micro_batches >= dist.world and micro_batches % dist.world) or cfg.train.micro_batch_size < dist.world:
        raise ConfigError(
            f"train.batch_size / train.micro_batch_size = {micro_batches} micro-batches of "
            f"{cfg.train.micro_batch_size} per step cannot be shared by {dist.world} processes"
        )
    with dist.main_first():  # rank 0 builds the Arrow tables of files seen for the first time; the others read them
        data = loading.load_data(cfg, located, results["data"])
    if cfg.dataset.decontaminate:
        data, results["decontaminated"] = loading.decontaminate(data)
    results["contamination"] = loading.contamination(data, cfg.dataset.name)

    if trained is not None and trained.resolve() != job.dir.resolve():  # copied first: this job holds its adapter
        shutil.copytree(trained / "adapter", job.dir / "adapter", dirs_exist_ok=True)
    build_cfg = OmegaConf.merge(cfg, {"adapter_path": str(job.dir / "adapter")}) if trained else cfg
    built = phases.build_base(build_cfg)  # setup in order: the base, what checks it, what sees it bare, the adapter
    phases.check_context(job, built, data)
    if cfg.eval.zero_shot and dist.main:
        results["zero_shot"] = phases.zero_shot(job, built.model, built.tokenizer, data)
    phases.attach(build_cfg, built)
    if cfg.adapter_path:  # placed by what was loaded, not by what the command line's adapter group says
        results["loaded_adapter"] = built.adapter_cfg
        results["axes"] = job_axes(results["config"], built.adapter_cfg, [t.site for t in built.targets if t.site])
        trained_at = saving.trained_on(Path(cfg.adapter_path))  # recorded by this version: the placement's own name
        results["axes"].update({k: v for k, v in trained_at.items() if k in results["axes"] and results["axes"][k]})
        results.update({key: results["axes"][key] for key in AXES})
        wandb_run.config.update({"axes": results["axes"]}, allow_val_change=True)
    results.update(phases.place(job, built))
    if trained is not None:
        log.info("evaluating the adapter %s already trained, instead of training again", trained / "adapter")
        results["train"] = trained_record
    else:
        results["train"] = phases.fit(
            job, built, data, pruning.reporting(cfg.get("search"), wandb_run.log), resume_from
        )
    if not dist.main:  # evaluation and every file of the job belong to rank 0
        results["eval"] = {}
        return
    files.write_json(job.dir / RESULTS, results)  # the adapter is saved: a job killed while evaluating
    # leaves its rerun this record, whose adapter it evaluates instead of training again; only now, with the record
    # naming the adapter on disk, are the checkpoints it replaces deleted
    shutil.rmtree(job.dir / "checkpoints", ignore_errors=True)
    results["eval"], predictions = phases.evaluate(job, built, data)
    shown = method(cfg.eval.method).row_fields
    tracking.log_predictions(wandb_run, predictions, int(cfg.logger.get("sample_predictions", 0)), shown)
