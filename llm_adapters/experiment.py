"""One job, top to bottom: data → model → adapter → train → evaluate → results.json.

``run`` is the whole recipe as a plain function over the resolved config. Whatever happens, the job leaves a
results.json (``ok`` or ``failed`` with the reason) and closes its W&B run with a matching exit code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from llm_adapters import __version__, adapters, checkpoint, distributed, files, placement, synthetic, tracking
from llm_adapters.adapters import saving
from llm_adapters.axes import job_axes
from llm_adapters.config import ConfigError, apply_study, validate
from llm_adapters.download import locate
from llm_adapters.evaluation import evaluate_set
from llm_adapters.examples import tokenize_for_training
from llm_adapters.models import (
    count_parameters,
    load_model,
    load_tokenizer,
    model_config,
    pretrained,
    resolve_device,
)
from llm_adapters.placement import PlacementError
from llm_adapters.records import EVAL_SETS, EvalSet, Record, eval_set, load_records, overlap
from llm_adapters.training import TrainResult, peak_memory_mb, train

log = logging.getLogger(__name__)


# Keys that say where things are stored or logged, not what is computed: two configs differing only here are the
# same experiment.
_NOT_THE_EXPERIMENT = ("logger", "data_dir", "data_url", "data_hub", "data_cache", "model_cache", "resume_search")


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (every device), as transformers' set_seed does; importing that one also imports
    PEFT when it is installed, nearly 2 s of every command's start."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


def config_hash(resolved: dict[str, Any]) -> str:
    """A digest of everything that decides a job's numbers (seed included), to recognise a job already done."""
    kept = {k: v for k, v in resolved.items() if k not in _NOT_THE_EXPERIMENT}
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
    left by one that did not finish (killed, preempted or failed) — this job's own directory included, so a job
    rerun in place (a requeued SLURM job, a study rerun into its fixed sweep directory) continues where it stopped."""
    done, newest, newest_step = None, None, -1
    for root in [*roots, job_dir]:
        for path in Path(root).rglob("results.json"):
            earlier = files.read_results(path)
            if earlier is None or earlier.get("config_hash") != digest:
                continue
            if earlier.get("status") == "ok" and path.parent.resolve() != job_dir.resolve():
                done = path.parent
            elif (found := checkpoint.latest(path.parent / "checkpoints")) is not None:
                step = int(found.name.removeprefix("step-"))
                if step > newest_step:
                    newest, newest_step = found, step
    return done, newest


def _end_early(results: dict[str, Any], job_dir: Path, status: str, reason: str, **extra: Any) -> dict[str, Any]:
    """Record a job that stops before any work: ``skipped`` (nothing to do) or ``failed`` (bad input)."""
    results.update(status=status, reason=reason, **extra)
    files.write_json(job_dir / "results.json", results)
    if status == "skipped":
        log.warning("skipped: %s", reason)
    return results


def run(cfg: DictConfig, job_dir: Path, group: str | None = None, sweep: bool = False) -> dict[str, Any]:
    """Fine-tune and evaluate one adapter as ``cfg`` says; returns what it wrote to ``job_dir/results.json``.

    A job whose config hash matches an earlier ``ok`` job under ``resume_search`` is skipped (``train.resume``).
    In a sweep (``sweep=True``) a combination that has no meaning is recorded as skipped; alone, it is an error.
    """
    cfg = apply_study(cfg)
    job_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    axes = job_axes(resolved)
    results: dict[str, Any] = {
        "status": "running",
        "reason": None,
        "mode": cfg.mode,
        **{key: axes[key] for key in ("model", "adapter", "placement", "dataset", "seed")},
        "axes": axes,
        "protocol": resolved["protocol"],
        "config_hash": config_hash(resolved),
        "config": resolved,
        "versions": tracking.versions(),
        "git_commit": tracking.git_commit(),
    }
    try:
        validate(cfg)
    except ValueError as error:  # ConfigError, or a PlacementError: a combination that has no meaning
        if sweep and isinstance(error, PlacementError):
            return _end_early(results, job_dir, "skipped", str(error))
        _end_early(results, job_dir, "failed", f"{type(error).__name__}: {error}")
        raise
    resume_from = None
    if cfg.train.resume:
        own = files.read_results(job_dir / "results.json") if (job_dir / "results.json").is_file() else None
        if own is not None and own.get("config_hash") == results["config_hash"] and own.get("status") == "ok":
            log.warning("skipped: already completed in this directory, %s", job_dir)  # its record stays as it is
            return own
        done, resume_from = find_earlier(results["config_hash"], list(cfg.resume_search), job_dir)
        if done is not None:
            return _end_early(results, job_dir, "skipped", f"already completed in {done}", reused_from=str(done))
    files.write_json(job_dir / "results.json", results)  # "running": a killed job leaves this behind
    tags = [f"{key}:{axes[key]}" for key in ("model", "adapter", "placement", "dataset")]
    dist = distributed.setup()
    logger_cfg = cfg.logger if dist.main else {"mode": "disabled"}  # one W&B run per job, from rank 0
    # The axes as a block of their own, so a W&B workspace groups and filters by them directly.
    wandb_run = tracking.start_wandb(logger_cfg, {"axes": axes, **resolved}, job_dir, group, tags)
    start = time.perf_counter()
    try:
        _fit_and_evaluate(cfg, job_dir, results, wandb_run, resume_from, dist)
        results["status"] = "ok"
    except BaseException as error:
        results["status"] = "failed"
        results["reason"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        results["seconds"] = time.perf_counter() - start
        files.write_json(job_dir / "results.json", results)
        wandb_run.summary.update(tracking.wandb_summary(results))
        wandb_run.finish(exit_code=0 if results["status"] == "ok" else 1)
    return results


def build_model(
    cfg: DictConfig, on_base: Callable[[Any, Any], None] | None = None
) -> tuple[Any, Any, dict[str, Any], list[placement.Target]]:
    """The tokenizer, then the model with its adapter, and the adapter config and targets it got.

    The adapter comes from ``cfg.adapter`` and the placement, or, with ``adapter_path``, from a saved adapter (its
    config, its targets, its weights). Either way the targets are settled from the model's config first, so a bad
    placement or a foreign adapter fails before any weights load. ``on_base(model, tokenizer)`` sees the pretrained
    model before any adapter touches it (the zero-shot evaluation).
    """
    model_cfg = pretrained(cfg.model, cfg.model_cache)
    tokenizer = load_tokenizer(model_cfg)
    if cfg.protocol.get("pad_token_id") is not None:  # the paper's scripts padded with id 0 whatever the model
        tokenizer.pad_token_id = int(cfg.protocol.pad_token_id)
    config = model_config(model_cfg, tokenizer)
    if cfg.adapter_path:
        adapter_cfg, targets = saving.read_config(Path(cfg.adapter_path), config)
    else:
        adapter_cfg = OmegaConf.to_container(cfg.adapter, resolve=True)
        targets = adapters.targets_for(config, adapter_cfg, cfg.placement)
    model = load_model(model_cfg, config)
    if on_base is not None:
        on_base(model, tokenizer)
    adapters.prepare(model, adapter_cfg, targets)
    if cfg.adapter_path:
        saving.load_weights(model, Path(cfg.adapter_path))
    return model, tokenizer, adapter_cfg, targets


def load_data(cfg: DictConfig) -> tuple[list[Record], dict[str, tuple[EvalSet, list[Record]]]]:
    """The training records and each whole evaluation set, all read and validated before any model loads."""

    def path(relative: str) -> Path:
        return locate(relative, cfg.data_dir, cfg.data_url, cfg.data_hub, cfg.data_cache)

    held_out: list[Record] = []
    if cfg.dataset.source == "synthetic":
        train_records, held_out = synthetic.generate(
            cfg.dataset.train_size, cfg.dataset.test_size, cfg.dataset.seed, cfg.dataset.two_step_fraction
        )
    elif cfg.mode == "train":
        train_records = load_records(path(cfg.dataset.path))
        if cfg.train.get("max_examples"):
            train_records = train_records[: cfg.train.max_examples]
    else:  # evaluating a saved adapter needs no training file
        train_records = []
    eval_sets = {}
    for name in cfg.eval.datasets:
        spec = eval_set(name)  # a name that is not a file's is the synthetic data's held-out split (validated)
        records = load_records(path(spec.path), spec) if name in EVAL_SETS else held_out
        eval_sets[name] = (spec, records)
    return train_records, eval_sets


def _fit_and_evaluate(
    cfg: DictConfig,
    job_dir: Path,
    results: dict[str, Any],
    wandb_run: Any,
    resume_from: Path | None,
    dist: distributed.Distributed,
) -> None:
    set_seed(cfg.seed)
    device = dist.device(resolve_device(cfg.device))
    micro_batches = cfg.train.batch_size // cfg.train.micro_batch_size
    if micro_batches % dist.world:
        raise ConfigError(
            f"train.batch_size / train.micro_batch_size = {micro_batches} micro-batches per step cannot be shared "
            f"by {dist.world} processes"
        )
    train_records, eval_sets = load_data(cfg)
    results["contamination"] = {
        name: overlap(train_records, records) for name, (_, records) in eval_sets.items() if train_records
    }
    for name, found in results["contamination"].items():
        if found["percent"] > 1.0:
            log.warning(
                "%s: %d of %d test questions (%.1f%%) also appear in the training set %s",
                name,
                found["overlap"],
                found["n"],
                found["percent"],
                cfg.dataset.name,
            )

    def zero_shot(base: Any, tokenizer: Any) -> None:
        if cfg.eval.get("zero_shot") and dist.main:
            if not quantized:
                base.to(device)
            results["zero_shot"], rows = evaluate_all(base, tokenizer, eval_sets, cfg, device, desc="zero-shot")
            files.write_jsonl(job_dir / "predictions_zero_shot.jsonl", rows)

    quantized = bool(cfg.model.get("load_in_8bit") or cfg.model.get("load_in_4bit"))  # bitsandbytes places its own
    model, tokenizer, adapter_cfg, targets = build_model(cfg, on_base=zero_shot)
    if cfg.adapter_path:  # placed by what was loaded, not by what the command line's adapter group says
        results["loaded_adapter"] = adapter_cfg
        results["axes"] = job_axes(results["config"], adapter_cfg)
        results["adapter"], results["placement"] = results["axes"]["adapter"], results["axes"]["placement"]
        wandb_run.config.update({"axes": results["axes"]}, allow_val_change=True)
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not quantized:
        model.to(device)
    results["params"] = count_parameters(model)
    results["targets"] = len(targets)
    log.info(
        "%s on %d modules: %d trainable of %d parameters",
        adapter_cfg["kind"],
        len(targets),
        results["params"]["trainable"],
        results["params"]["total"],
    )

    examples = tokenize_for_training(train_records, tokenizer, cfg.train.cutoff_len, cfg.train.train_on_inputs)
    if cfg.mode == "train" and results["params"]["trainable"]:
        fit = train(
            model,
            examples,
            cfg.train,
            tokenizer.pad_token_id,
            cfg.seed,
            device,
            on_log=wandb_run.log,
            checkpoint_dir=job_dir / "checkpoints",
            resume_from=resume_from,
            dist=dist,
        )
        if dist.main:
            saving.save(model, adapter_cfg, cfg.model.name, targets, job_dir / "adapter")
            shutil.rmtree(job_dir / "checkpoints", ignore_errors=True)  # only now: the saved adapter is the final word
    else:  # mode=eval, or adapter=none (the base model zero-shot)
        fit = TrainResult(steps=0, seconds=0.0, tokens=0)
    results["train"] = {
        "steps": fit.steps,
        "examples": len(examples),
        "loss_history": fit.loss_history,
        "seconds": fit.seconds,
        "tokens_per_second": fit.tokens_per_second,
        "peak_memory_mb": peak_memory_mb(device),
        "resumed_from": str(resume_from) if resume_from else None,
        "processes": dist.world,
    }
    if not dist.main:  # evaluation and every file of the job belong to rank 0
        results["eval"] = {}
        return

    if cfg.eval.merge_adapters:
        if cfg.protocol.eval_adapter_dropout:
            log.warning("eval.merge_adapters ignored: this protocol keeps adapter dropout on while generating")
        else:
            log.info("merged %d adapter layers into the frozen weights for evaluation", adapters.merge_adapters(model))
    results["eval"], predictions = evaluate_all(model, tokenizer, eval_sets, cfg, device)
    files.write_jsonl(job_dir / "predictions.jsonl", predictions)

    tracking.log_predictions(wandb_run, predictions, int(cfg.logger.get("sample_predictions", 0)))


def evaluate_all(
    model: Any,
    tokenizer: Any,
    eval_sets: dict[str, tuple[EvalSet, list[Record]]],
    cfg: DictConfig,
    device: torch.device,
    desc: str = "eval",
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Accuracy per evaluation set (the first ``eval.max_samples`` records of each) and every prediction row."""
    metrics: dict[str, dict[str, float]] = {}
    predictions: list[dict[str, Any]] = []
    for name, (spec, records) in eval_sets.items():
        subset = records[: cfg.eval.max_samples] if cfg.eval.max_samples else records
        metrics[name], rows = evaluate_set(model, tokenizer, spec, subset, cfg.eval, cfg.protocol, device, desc)
        log.info("%s %s: %s in %.1f s", desc, name, _score(metrics[name]), metrics[name]["seconds"])
        predictions += rows
    return metrics, predictions


def _score(metrics: dict[str, Any]) -> str:
    return f"{metrics['accuracy']:.1f}% ({metrics['correct']}/{metrics['n']})"


def summary(results: dict[str, Any], job_dir: Path) -> str:
    """The one-screen report printed at the end of ``python run.py``."""
    p, t = results["params"], results["train"]
    history = t["loss_history"]
    lines = [
        f"llm-adapters: {results['adapter']} @ {results['placement']} on {results['model']} / {results['dataset']}"
        f" (seed {results['seed']}, protocol {results['protocol']['name']}): {results['status']}",
        f"  trainable params  {p['trainable']:,} of {p['total']:,} ({p['trainable_pct']:.3f}%)",
        f"  train loss        {history[0][1]:.4f} -> {history[-1][1]:.4f} over {t['steps']} steps"
        f" ({t['seconds']:.1f} s, {t['tokens_per_second']:,.0f} tokens/s)"
        if history
        else f"  evaluated         the saved adapter {results['config']['adapter_path']} (no training)"
        if results["config"].get("adapter_path")
        else "  train             none (the base model, zero-shot)",
    ]
    base = results.get("zero_shot") or {}
    for name, m in results["eval"].items():
        before = f"zero-shot {_score(base[name])} -> " if name in base else ""
        lines.append(f"  accuracy          {name}: {before}{_score(m)}, {m['seconds']:.1f} s")
    lines += [f"  total time        {results['seconds']:.1f} s", f"  results           {job_dir / 'results.json'}"]
    return "\n".join(lines)
