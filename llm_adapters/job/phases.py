"""The phases of one job, each a function that returns what it made: the data (``data.loading``), the model with its
adapter, the trained adapter (saved), the evaluation. ``recipe.Recipe`` calls them in order and records each
result as soon as it exists, so a later failure keeps what came before."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from llm_adapters import adapters, files
from llm_adapters.adapters import saving
from llm_adapters.adapters.placement import Target
from llm_adapters.data import arrow_cache
from llm_adapters.data.loading import Data, cache
from llm_adapters.data.training_examples import IGNORE_INDEX
from llm_adapters.evaluation import check_context as check_prompts
from llm_adapters.evaluation import evaluate_all
from llm_adapters.job.config import ConfigError
from llm_adapters.model.loading import (
    count_parameters,
    load_model,
    load_tokenizer,
    model_config,
    peak_memory_mb,
    pretrained,
    resolve_device,
    warn_if_slow,
)
from llm_adapters.training import TrainResult, distributed, train

log = logging.getLogger(__name__)


@dataclass
class Job:
    """What every phase after the data works within: the config, the job's directory, its device and processes."""

    cfg: DictConfig
    dir: Path
    device: torch.device
    dist: distributed.Distributed
    config_hash: str | None = None  # recorded with its saved adapter: the job knows its own work by it


class Built(NamedTuple):
    """The model with its adapter, its tokenizer, and the adapter config and targets it got."""

    model: Any
    tokenizer: Any
    adapter_cfg: dict[str, Any]
    targets: list[Target]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (every device), as transformers' set_seed does; importing that one also imports
    PEFT when it is installed, nearly 2 s of every command's start."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CUDA too


def random_state() -> dict[str, torch.Tensor]:
    """torch's generators (the CPU's and each CUDA device's), which adapter dropout draws from, as tensors."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state |= {f"cuda:{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return state


def start_evaluation_randomness(cfg: DictConfig, adapter_dir: Path | None) -> None:
    """Put torch's generators where evaluation starts: the state saved with the adapter at the end of its training
    (what an uninterrupted job has at this point), else the job's seed. So a job evaluated after a resume, a kill
    while evaluating, or reusing another directory's adapter draws exactly what the uninterrupted job drew."""
    saved = saving.random_state(adapter_dir) if adapter_dir is not None else None
    if saved is None:
        set_seed(cfg.seed)
        return
    torch.set_rng_state(saved["cpu"])
    cuda = [saved[k] for k in sorted(k for k in saved if k.startswith("cuda:"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def check_batches(cfg: DictConfig, dist: distributed.Distributed) -> None:
    """A step's micro-batches must be shareable by the job's processes (or each split across all of them)."""
    micro_batches = cfg.train.batch_size // cfg.train.micro_batch_size
    if (micro_batches >= dist.world and micro_batches % dist.world) or cfg.train.micro_batch_size < dist.world:
        raise ConfigError(
            f"train.batch_size / train.micro_batch_size = {micro_batches} micro-batches of "
            f"{cfg.train.micro_batch_size} per step cannot be shared by {dist.world} processes"
        )


def build_base(cfg: DictConfig) -> Built:
    """The tokenizer and the pretrained model, with where its adapter will go settled but nothing attached yet.

    The adapter comes from ``cfg.adapter`` and the placement, or, with ``adapter_path``, from a saved adapter (its
    config, its targets). Either way the targets are settled from the model's config first, so a bad placement or a
    foreign adapter fails before any weights load. What sees the base as it is (the context check, the zero-shot
    evaluation) runs between this and ``attach``.
    """
    model_cfg = pretrained(cfg.model, cfg.paths.model_cache)
    tokenizer = load_tokenizer(model_cfg)
    if cfg.protocol.get("pad_token_id") is not None:  # the paper's scripts padded with id 0 whatever the model
        tokenizer.pad_token_id = int(cfg.protocol.pad_token_id)
    config = model_config(model_cfg, tokenizer)
    if cfg.adapter_path:
        adapter_cfg, targets = saving.read_config(Path(cfg.adapter_path), config)
    else:
        adapter_cfg = OmegaConf.to_container(cfg.adapter, resolve=True)
        targets = adapters.targets_for(config, adapter_cfg, cfg.placement)
        if adapter_cfg.get("peft"):  # built on the meta device first: what PEFT refuses (or would change, as OFT's
            adapters.trainable_count(adapter_cfg, targets, config)  # block size) is one line before any weights
    warn_if_slow(model_cfg["dtype"], resolve_device(cfg.device).type)
    return Built(load_model(model_cfg, config), tokenizer, adapter_cfg, targets)


def attach(cfg: DictConfig, built: Built) -> None:
    """Freeze the base and put its adapter on it (with ``adapter_path``, the saved weights too)."""
    adapters.prepare(built.model, built.adapter_cfg, built.targets)
    if cfg.adapter_path:
        saving.load_weights(built.model, Path(cfg.adapter_path))


def quantized(cfg: DictConfig) -> bool:
    """Whether bitsandbytes loads the weights (it places them on the device itself)."""
    return bool(cfg.model.load_in_8bit or cfg.model.load_in_4bit)


def place(job: Job, built: Built) -> dict[str, Any]:
    """Put the model on its device, ready to train; returns its parameter counts and how many modules it adapts."""
    if job.cfg.train.gradient_checkpointing:
        built.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not quantized(job.cfg):
        built.model.to(job.device)
    params = count_parameters(built.model)
    log.info(
        "%s on %d modules: %d trainable of %d parameters",
        *(built.adapter_cfg["kind"], len(built.targets), params["trainable"], params["total"]),
    )
    return {"params": params, "targets": len(built.targets)}


def check_context(job: Job, built: Built, data: Data) -> None:
    """Evaluation prompts too long for the model's context, refused before training (evaluation.check_context)."""
    if job.dist.main:
        virtual = int(built.adapter_cfg.get("num_virtual_tokens") or 0)
        check_prompts(built.model.config, built.tokenizer, data.eval_sets, job.cfg.eval, virtual)


def fit(
    job: Job, built: Built, data: Data, on_log: Callable[[dict[str, float], int], None], resume_from: Path | None
) -> dict[str, Any]:
    """Train the adapter and save it (mode=train with something to train); returns the training record.

    The saved adapter carries the record and the job's config hash, so it is recognised even without the job's
    results.json; the checkpoints stay until the job's record names the adapter (``recipe``), so at every
    instant one of the two holds the training."""
    cfg, tokenizer, dist = job.cfg, built.tokenizer, job.dist
    result = TrainResult(steps=0, seconds=0.0, tokens=0)  # mode=eval, or adapter=none (the base model zero-shot)
    trained = cfg.mode == "train" and data.train is not None and any(p.requires_grad for p in built.model.parameters())
    if trained:
        with dist.main_first():  # rank 0 tokenizes into the cache; the other ranks read it
            examples = arrow_cache.tokenized(data.train, data.train_id, tokenizer, cfg.train, cfg.protocol, cache(cfg))
        if not any(label != IGNORE_INDEX for example in examples for label in example["labels"][1:]):  # 1st: no target
            cut = "to one token" if cfg.train.train_on_inputs else "before its response (train_on_inputs=false)"
            raise ConfigError(
                f"train.cutoff_len {cfg.train.cutoff_len} cuts every training example {cut}: no token is left to "
                "learn from"
            )
        checkpoints = job.dir / "checkpoints"
        result = train(
            *(built.model, examples, cfg.train, tokenizer.pad_token_id, cfg.seed, job.device),
            on_log=on_log,
            checkpoint_dir=checkpoints,
            resume_from=resume_from,
            dist=dist,
        )
    record = {
        "steps": result.steps,
        "examples": 0 if data.train is None else data.train.num_rows,
        "loss_history": result.loss_history,
        "seconds": result.seconds,
        "tokens_per_second": result.tokens_per_second,
        "val_examples": result.val_examples,
        "val_history": result.val_history,
        "kept_step": result.best_step,  # train.keep=best: the step whose weights were saved (null: the last)
        "peak_memory_mb": peak_memory_mb(job.device),
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "processes": dist.world,
    }
    if trained and dist.main:
        trained_on = {"dataset": cfg.dataset.name, "placement": cfg.placement.name}
        identity = {"config_hash": job.config_hash, "train": record}
        saving.save(
            *(built.model, built.adapter_cfg, cfg.model.name, built.targets, job.dir / "adapter", trained_on),
            job=identity,
            random_state=random_state(),
        )
    return record


def evaluate(job: Job, built: Built, data: Data) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Accuracy of the adapted model per evaluation set, and every prediction (written to predictions.jsonl).

    Its mergeable adapters are first folded into the frozen weights when ``eval.merge_adapters`` asks and the
    protocol allows (the paper's protocol generates with adapter dropout on: nothing to fold then)."""
    cfg = job.cfg
    start_evaluation_randomness(cfg, Path(cfg.adapter_path) if cfg.adapter_path else job.dir / "adapter")
    if cfg.eval.merge_adapters:
        if cfg.protocol.eval_adapter_dropout:
            log.warning("eval.merge_adapters ignored: this protocol keeps adapter dropout on while generating")
        else:
            merged = adapters.merge_adapters(built.model)
            log.info("merged %d adapter layers into the frozen weights for evaluation", merged)
    metrics, rows = evaluate_all(built.model, built.tokenizer, data.eval_sets, cfg, job.device)
    files.write_jsonl(job.dir / "predictions.jsonl", rows)
    return metrics, rows


def zero_shot(job: Job, base: Any, tokenizer: Any, data: Data) -> dict[str, dict[str, Any]]:
    """Accuracy of the pretrained model before any adapter touches it (predictions in predictions_zero_shot.jsonl)."""
    if not quantized(job.cfg):
        base.to(job.device)
    metrics, rows = evaluate_all(base, tokenizer, data.eval_sets, job.cfg, job.device, desc="zero-shot")
    files.write_jsonl(job.dir / "predictions_zero_shot.jsonl", rows)
    return metrics
