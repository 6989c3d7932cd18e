"""The phases of one job, each a function that returns what it made: the data, the model with its adapter, the
trained adapter (saved), the evaluation. ``experiment.run`` calls them in order and records each result as soon as
it exists, so a later failure keeps what came before."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from llm_adapters import adapters, corpus, distributed, files, synthetic
from llm_adapters.adapters import saving
from llm_adapters.config import ConfigError
from llm_adapters.download import locate
from llm_adapters.evaluation import check_context as check_prompts
from llm_adapters.evaluation import evaluate_all
from llm_adapters.examples import IGNORE_INDEX
from llm_adapters.models import (
    count_parameters,
    load_model,
    load_tokenizer,
    model_config,
    peak_memory_mb,
    pretrained,
)
from llm_adapters.placement import Target
from llm_adapters.records import EVAL_SETS, EvalSet, Record, decontaminated, eval_set, overlap
from llm_adapters.resume import Fingerprint, fingerprint
from llm_adapters.training import TrainResult, train

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

EvalSets = dict[str, tuple[EvalSet, list[Record]]]


@dataclass
class Data:
    """The training records (an Arrow table; None when the job trains on nothing), what identifies exactly those
    records (the file's SHA-256 or the generator's settings, and every selection made from them: the tokenized
    cache's key), and each whole evaluation set."""

    train: Dataset | None
    train_id: str
    eval_sets: EvalSets

    def questions(self) -> list[str]:
        """The training records' instructions (the contamination report and decontamination compare these)."""
        return [] if self.train is None else self.train.with_format("arrow")["instruction"].to_pylist()

    def select(self, indices: Sequence[int], why: str) -> Data:
        """The data with only these training records (a view of the same table), identified as such."""
        assert self.train is not None
        kept = self.train.select(indices)
        return Data(kept, corpus.digest(self.train_id, why, list(map(int, indices))), self.eval_sets)


@dataclass
class Job:
    """What every phase after the data works within: the config, the job's directory, its device and processes."""

    cfg: DictConfig
    dir: Path
    device: torch.device
    dist: distributed.Distributed


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


def data_files(cfg: DictConfig) -> dict[str, Path]:
    """Where each data file the job reads is, found (or fetched) before anything else: the training file (mode=train
    on a file dataset, key ``train``) and each evaluation set's file (the synthetic data has none)."""
    p = cfg.paths
    wanted = {name: eval_set(name).path for name in cfg.eval.datasets if name in EVAL_SETS}
    if cfg.dataset.source == "file" and cfg.mode == "train":
        wanted = {"train": cfg.dataset.path, **wanted}
    return {name: locate(path, p.data_dir, p.data_url, p.data_hub, p.data_cache) for name, path in wanted.items()}


def data_cache(cfg: DictConfig) -> Path:
    """Where the Arrow tables of the data files and the tokenized training sets are kept."""
    return Path(cfg.paths.data_cache).expanduser() / "arrow"


def load_data(cfg: DictConfig, located: dict[str, Path] | None = None, digests: Fingerprint | None = None) -> Data:
    """The training records and each whole evaluation set, all read (through ``datasets``) and validated before any
    model loads (``located``: ``data_files(cfg)``, ``digests``: ``resume.fingerprint`` of them, when already known)."""
    from datasets import Dataset

    located = data_files(cfg) if located is None else located
    digests = fingerprint(located) if digests is None else digests
    cache, held_out = data_cache(cfg), []
    data = Data(None, "", {})
    if cfg.dataset.source == "synthetic":
        d = cfg.dataset
        records, held_out = synthetic.generate(d.train_size, d.test_size, d.seed, d.two_step_fraction)
        data.train = Dataset.from_list(records)
        data.train_id = corpus.digest("synthetic", d.train_size, d.test_size, d.seed, d.two_step_fraction)
    elif cfg.mode == "train":  # evaluating a saved adapter needs no training file
        data.train = corpus.read(located["train"], digests["train"]["sha256"], None, cache)
        data.train_id = digests["train"]["sha256"]
        if cfg.train.max_examples and cfg.train.max_examples < data.train.num_rows:
            data = data.select(range(cfg.train.max_examples), "first")
        if cfg.train.val_set_size >= data.train.num_rows:
            raise ConfigError(
                f"train.val_set_size {cfg.train.val_set_size} leaves nothing to train on "
                f"({data.train.num_rows} records in {cfg.dataset.path})"
            )
    for name in cfg.eval.datasets:
        spec = eval_set(name)  # a name that is not a file's is the synthetic data's held-out split (validated)
        if name in EVAL_SETS:
            records = corpus.read(located[name], digests[name]["sha256"], spec, cache).to_list()
        else:
            records = held_out
        data.eval_sets[name] = (spec, records)
    return data


def decontaminate(data: Data) -> tuple[Data, dict[str, int]]:
    """``dataset.decontaminate``: the data without the training records whose question is in an evaluated set, and
    how many each set removed."""
    kept, dropped = decontaminated(data.questions(), {name: records for name, (_, records) in data.eval_sets.items()})
    log.warning("dataset.decontaminate: %d training records dropped (%s)", sum(dropped.values()), dropped)
    return data.select(kept, "decontaminated"), dropped


def contamination(data: Data, train_name: str) -> dict[str, dict[str, Any]]:
    """Per evaluation set, how many of its questions are also in the training set (a warning above 1%)."""
    questions = data.questions()
    found = {name: overlap(questions, records) for name, (_, records) in data.eval_sets.items() if questions}
    for name, counts in found.items():
        if counts["percent"] > 1.0:
            log.warning(
                "%s: %d of %d test questions (%.1f%%) also appear in the training set %s",
                *(name, counts["overlap"], counts["n"], counts["percent"], train_name),
            )
    return found


def build_model(cfg: DictConfig, on_base: Callable[[Any, Any], None] | None = None) -> Built:
    """The tokenizer, then the model with its adapter.

    The adapter comes from ``cfg.adapter`` and the placement, or, with ``adapter_path``, from a saved adapter (its
    config, its targets, its weights). Either way the targets are settled from the model's config first, so a bad
    placement or a foreign adapter fails before any weights load. ``on_base(model, tokenizer)`` sees the pretrained
    model before any adapter touches it (the zero-shot evaluation).
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
    model = load_model(model_cfg, config)
    if on_base is not None:
        on_base(model, tokenizer)
    adapters.prepare(model, adapter_cfg, targets)
    if cfg.adapter_path:
        saving.load_weights(model, Path(cfg.adapter_path))
    return Built(model, tokenizer, adapter_cfg, targets)


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

    The checkpoints are deleted only once the saved adapter is in place: it is the final word."""
    cfg, tokenizer, dist = job.cfg, built.tokenizer, job.dist
    result = TrainResult(steps=0, seconds=0.0, tokens=0)  # mode=eval, or adapter=none (the base model zero-shot)
    if cfg.mode == "train" and data.train is not None and any(p.requires_grad for p in built.model.parameters()):
        with dist.main_first():  # rank 0 tokenizes into the cache; the other ranks read it
            examples = corpus.tokenized(data.train, data.train_id, tokenizer, cfg.train, cfg.protocol, data_cache(cfg))
        if not any(label != IGNORE_INDEX for example in examples for label in example["labels"]):
            raise ConfigError(
                f"train.cutoff_len {cfg.train.cutoff_len} cuts every training example before its response "
                "(train_on_inputs=false): no token is left to learn from"
            )
        checkpoints = job.dir / "checkpoints"
        result = train(
            *(built.model, examples, cfg.train, tokenizer.pad_token_id, cfg.seed, job.device),
            on_log=on_log,
            checkpoint_dir=checkpoints,
            resume_from=resume_from,
            dist=dist,
        )
        if dist.main:
            saving.save(built.model, built.adapter_cfg, cfg.model.name, built.targets, job.dir / "adapter")
            shutil.rmtree(checkpoints, ignore_errors=True)
    return {
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


def evaluate(job: Job, built: Built, data: Data) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Accuracy of the adapted model per evaluation set, and every prediction (written to predictions.jsonl).

    Its mergeable adapters are first folded into the frozen weights when ``eval.merge_adapters`` asks and the
    protocol allows (the paper's protocol generates with adapter dropout on: nothing to fold then)."""
    cfg = job.cfg
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
