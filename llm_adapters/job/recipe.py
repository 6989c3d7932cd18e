"""One job, top to bottom: a composed config in, a written ``results.json`` out.

``Recipe`` holds the job's state on itself and reads in the order it runs: ``check`` (the config, the budget, the
data files, the config hash), ``earlier`` (what earlier jobs of the same experiment leave to do), ``open`` (the
record, the lock, W&B), ``setup`` (data, base model, the context check, zero-shot, the adapter, the device),
``train``, ``evaluate`` and ``finish``. Each step calls one layer (``data``, ``model``/``adapters`` through
``phases``, ``training``, ``evaluation``) and records what it made as soon as it exists, so a later failure keeps
what came before. Whatever happens, the job leaves a results.json (``ok``, ``skipped``, ``pruned`` or ``failed``
with the reason) and closes its W&B run with a matching exit code. Every fact about the job (its axes, its
provenance, its config hash, its device) is computed once, here, and passed on.
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
from llm_adapters.job.config import validate
from llm_adapters.model.loading import resolve_device
from llm_adapters.search import pruning
from llm_adapters.training import distributed

log = logging.getLogger(__name__)
AXES = ("model", "adapter", "placement", "dataset", "seed")  # also top-level keys of results.json
RESULTS = "results.json"


def opening_record(cfg: DictConfig, provenance: dict[str, Any]) -> dict[str, Any]:
    """What results.json says of a job before it does anything: its setting, its axes, its config, and where the
    numbers come from (``provenance``: the package versions and the code's commit, looked up once per job)."""
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
        **provenance,
    }


class Recipe:
    """Fine-tune and evaluate one adapter as ``cfg`` says, in ``job_dir``; ``run`` is the whole path.

    A job whose config hash matches an earlier ``ok`` job is skipped (``train.resume``); one that matches unfinished
    work continues it (a checkpoint, or a saved adapter that is evaluated). In a sweep (``sweep=True``) a combination
    that has no meaning is recorded as skipped; alone, it is an error. ``cfg`` has its study's patches applied
    already (``run.py`` applies them once, where it saves the config).
    """

    def __init__(self, cfg: DictConfig, job_dir: Path, group: str | None = None, sweep: bool = False) -> None:
        self.cfg, self.dir, self.group, self.sweep = cfg, job_dir, group, sweep
        self.provenance = {"versions": tracking.versions(), "git_commit": tracking.git_commit()}
        self.results = opening_record(cfg, self.provenance)
        self.located: dict[str, Path] = {}
        self.earlier = resume.Earlier()
        self.trained_record: dict[str, Any] | None = None  # an earlier job's finished training, evaluated here
        self.wandb_run: Any = None
        self.lock: Path | None = None
        self.job: phases.Job | None = None
        self.data: Any = None
        self.built: phases.Built | None = None

    # --- the whole path

    def run(self) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        if (ended := self.check()) is not None or (ended := self.earlier_work()) is not None:
            return ended
        self.open()
        start = time.perf_counter()
        try:
            self.setup()
            self.train()
            self.evaluate()
            self.results["status"] = "ok"
            self.supersede()
        except BaseException as error:
            self.stopped(error)
        finally:
            self.finish(time.perf_counter() - start)
        return self.results

    # --- before anything is written: is there a job to run?

    def check(self) -> dict[str, Any] | None:
        """The config's checks, the budget's size, the data files and the config hash; a combination without
        meaning in a sweep ends the job here as ``skipped`` (returned), bad input as ``failed`` (raised)."""
        try:
            validate(self.cfg)
            self.cfg = budget.apply(self.cfg)  # +budget: the size solved for a parameter count, before it is recorded
            self.results = opening_record(self.cfg, self.provenance)
            self.located = loading.data_files(self.cfg)
        except ValueError as error:  # ConfigError, DataError, or a PlacementError: a combination with no meaning
            if self.sweep and isinstance(error, PlacementError):
                return self.end_early("skipped", str(error))
            self.end_early("failed", f"{type(error).__name__}: {error}")
            raise
        self.results["data"] = fingerprint(self.located)
        self.results["config_hash"] = resume.config_hash(self.results["config"], self.results["data"])
        return None

    def earlier_work(self) -> dict[str, Any] | None:
        """What earlier jobs of this experiment decide (``train.resume``): the record to return when there is nothing
        to do (done here or elsewhere, or running now elsewhere), else what this job continues from. A sweep's job
        also searches its own sweep directory, wherever that is (``paths.resume_search`` or not)."""
        cfg, digest = self.cfg, self.results["config_hash"]
        if cfg.train.resume and (own := resume.completed_here(self.dir, digest)) is not None:
            log.warning("skipped: already completed in this directory, %s", files.shown(self.dir))  # its record stays
            return own
        resume.claim(self.dir, digest, cfg.train.resume)  # before anything is written here
        if not cfg.train.resume:
            return None
        roots = resume.roots_of(cfg.paths.resume_search) + ([str(self.dir.parent)] if self.sweep else [])
        self.earlier = resume.earlier_work(digest, roots, self.dir)
        if self.earlier.running is not None:
            return self.end_early(
                "skipped", f"the same experiment is running now in {files.shown(self.earlier.running)}"
            )
        if self.earlier.done is not None:
            done = files.shown(self.earlier.done)
            return self.end_early("skipped", f"already completed in {done}", reused_from=done)
        if self.earlier.trained is not None:  # read now: when it is this directory, the record written next replaces it
            self.trained_record = resume.training_record(self.earlier.trained, digest)
        return None

    def end_early(self, status: str, reason: str, **extra: Any) -> dict[str, Any]:
        """Record a job that stops before any work: ``skipped`` (nothing to do) or ``failed`` (bad input); never over
        a directory's earlier work (a finished record, checkpoints, an adapter), which stays as it was."""
        results = self.results
        results.update(status=status, reason=reason, **extra)
        record = self.dir / RESULTS
        before = (files.read_results(record) if record.is_file() else None) or {}
        keys = ("status", "reason", "config_hash")
        same = results["config_hash"] is not None and all(before.get(key) == results[key] for key in keys)
        if resume.holds_work(self.dir) is None and not same:  # a rerun leaves the same skip's record (and git) alone
            files.write_json(record, results)
        if status == "skipped":
            log.warning("skipped: %s", reason)
        return results

    # --- the job's own work

    def open(self) -> None:
        """The ``running`` record (a killed job leaves it behind), the lock, and the job's one W&B run (rank 0's)."""
        cfg, results = self.cfg, self.results
        files.write_json(self.dir / RESULTS, results)
        dist = distributed.setup()
        self.lock = locks.lock(self.dir) if dist.main else None  # no other job resumes from this one while it lives
        logger_cfg = cfg.logger if dist.main else {"mode": "disabled"}
        tags = [f"{key}:{results['axes'][key]}" for key in (*AXES[:-1], "method")]
        # The axes as a block of their own, so a W&B workspace groups and filters by them directly.
        config = {"axes": results["axes"], **results["config"]}
        self.wandb_run = tracking.start_wandb(logger_cfg, config, self.dir, self.group, tags)
        device = dist.device(resolve_device(cfg.device))
        self.job = phases.Job(cfg, self.dir, device, dist, results["config_hash"])

    def setup(self) -> None:
        """The data, then in order the base model, what checks it, what sees it bare (zero-shot) and its adapter:
        a new one, or the finished one an earlier job of this experiment left (``earlier.trained``)."""
        job, cfg, results, trained = self.job, self.cfg, self.results, self.earlier.trained
        phases.set_seed(cfg.seed)
        phases.check_batches(cfg, job.dist)
        with job.dist.main_first():  # rank 0 builds the Arrow tables of files seen for the first time; the others read
            self.data = loading.load_data(cfg, self.located, results["data"])
        if cfg.dataset.decontaminate:
            self.data, results["decontaminated"] = loading.decontaminate(self.data)
        results["contamination"] = loading.contamination(self.data, cfg.dataset.name)
        if trained is not None and trained.resolve() != self.dir.resolve():  # copied first: this job holds its adapter
            shutil.copytree(trained / "adapter", self.dir / "adapter", dirs_exist_ok=True)
        build_cfg = OmegaConf.merge(cfg, {"adapter_path": str(self.dir / "adapter")}) if trained else cfg
        self.built = phases.build_base(build_cfg)
        phases.check_context(job, self.built, self.data)
        if cfg.eval.zero_shot and job.dist.main:
            results["zero_shot"] = phases.zero_shot(job, self.built.model, self.built.tokenizer, self.data)
        phases.attach(build_cfg, self.built)
        if cfg.adapter_path:  # placed by what was loaded, not by what the command line's adapter group says
            self.place_loaded()
        results.update(phases.place(job, self.built))

    def place_loaded(self) -> None:
        """A loaded adapter's axes (``mode=eval``): its own kind, size and sites, the placement it was trained at."""
        results, built = self.results, self.built
        results["loaded_adapter"] = built.adapter_cfg
        sites = [t.site for t in built.targets if t.site]
        results["axes"] = job_axes(results["config"], built.adapter_cfg, sites)
        trained_at = saving.trained_on(Path(self.cfg.adapter_path))  # recorded by this version: the placement's name
        results["axes"].update({k: v for k, v in trained_at.items() if k in results["axes"] and results["axes"][k]})
        results.update({key: results["axes"][key] for key in AXES})
        self.wandb_run.config.update({"axes": results["axes"]}, allow_val_change=True)

    def train(self) -> None:
        """Train and save the adapter, or take the finished training of an earlier job; then, with the record naming
        the saved adapter on disk, delete the checkpoints it replaces (at every instant one of the two exists)."""
        job = self.job
        if self.trained_record is not None:
            trained = self.earlier.trained / "adapter"
            log.info("evaluating the adapter %s already trained, instead of training again", trained)
            self.results["train"] = self.trained_record
        else:
            on_log = pruning.reporting(self.cfg.get("search"), self.wandb_run.log)
            self.results["train"] = phases.fit(job, self.built, self.data, on_log, self.earlier.checkpoint)
        if job.dist.main:  # the record and every file of the job belong to rank 0
            files.write_json(self.dir / RESULTS, self.results)  # a job killed while evaluating is evaluated again
            shutil.rmtree(self.dir / "checkpoints", ignore_errors=True)

    def evaluate(self) -> None:
        """Evaluate on rank 0 (the others record nothing) and log a sample of the predictions to W&B."""
        if not self.job.dist.main:
            self.results["eval"] = {}
            return
        self.results["eval"], predictions = phases.evaluate(self.job, self.built, self.data)
        shown = method(self.cfg.eval.method).row_fields
        tracking.log_predictions(self.wandb_run, predictions, int(self.cfg.logger.get("sample_predictions", 0)), shown)

    # --- how it ends

    def supersede(self) -> None:
        """An earlier job this one continued (its checkpoint, or its finished adapter) is marked ``superseded``."""
        checkpoint = self.earlier.checkpoint
        continued = self.earlier.trained or (checkpoint.parent.parent if checkpoint else None)
        if continued is not None and self.job.dist.main:
            resume.supersede(continued, self.dir)

    def stopped(self, error: BaseException) -> None:
        """Record why the job stopped: ``pruned`` by its search, ``skipped`` (in a sweep, a family without a module
        the kind takes), else ``failed`` with the error, which is raised on."""
        skipped = self.sweep and isinstance(error, PlacementError)
        ended = "pruned" if isinstance(error, pruning.Pruned) else "skipped" if skipped else "failed"
        self.results["status"] = ended
        self.results["reason"] = f"{type(error).__name__}: {error}" if ended == "failed" else str(error)
        if ended == "failed":
            raise error
        log.warning("%s: %s", ended, error)

    def finish(self, seconds: float) -> None:
        """The final record, the lock released, the W&B run closed with the job's outcome."""
        self.results["seconds"] = seconds
        try:
            files.write_json(self.dir / RESULTS, self.results)
        except OSError as error:  # a full disk: the failure it is reporting matters more than this record
            log.error("results.json could not be written: %s", error)
        if self.lock is not None:
            self.lock.unlink(missing_ok=True)
        self.wandb_run.summary.update(tracking.wandb_summary(self.results))
        self.wandb_run.finish(exit_code=0 if self.results["status"] == "ok" else 1)


def run(cfg: DictConfig, job_dir: Path, group: str | None = None, sweep: bool = False) -> dict[str, Any]:
    """Run one job (``Recipe``); returns what it wrote to ``job_dir/results.json``."""
    return Recipe(cfg, job_dir, group, sweep).run()
