"""``mode=plan``: what a job would cost, from the architecture's numbers alone — no weights, no network.

The model is built on PyTorch's meta device (shapes without storage) from the model YAML's ``config``, the adapter is
put on it exactly as a real job would, and the parameters are counted: exact to the parameter. Training memory is an
estimate: the frozen weights at their dtype (or quantized width), the trainable parameters with their fp32
gradients and two Adam moments, and activations by Korthikanti et al. (2022)'s per-layer count of about 34 bytes per
token per hidden unit in 16-bit (2 with gradient checkpointing), leaving out the attention-score term that fused
attention kernels avoid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForCausalLM

from llm_adapters import adapters
from llm_adapters.adapters import budget
from llm_adapters.data.sets import EVAL_SETS
from llm_adapters.errors import PlacementError
from llm_adapters.files import write_json
from llm_adapters.job.axes import job_axes
from llm_adapters.job.config import validate
from llm_adapters.model.loading import DTYPES, count_parameters, load_tokenizer, model_config

GB = 2**30


def memory_gb(params: dict[str, float], hidden: int, layers: int, cfg: DictConfig) -> dict[str, float]:
    """Estimated peak training memory, in GiB, split into its parts."""
    if cfg.model.load_in_4bit:
        weight_bytes = 0.5
    elif cfg.model.load_in_8bit:
        weight_bytes = 1.0
    else:
        weight_bytes = torch.finfo(DTYPES[cfg.model.dtype]).bits / 8
    frozen = (params["total"] - params["trainable"]) * weight_bytes
    trainable = params["trainable"] * (4 + 4 + 8)  # fp32 weights, gradients, Adam's two moments
    per_token = 2 if cfg.train.gradient_checkpointing else 34
    activations = cfg.train.micro_batch_size * cfg.train.cutoff_len * hidden * layers * per_token * weight_bytes / 2
    parts = {"weights": frozen / GB, "trainable_and_optimizer": trainable / GB, "activations": activations / GB}
    return {**parts, "total": sum(parts.values())}


def eval_questions(cfg: DictConfig) -> dict[str, int | None]:
    """How many questions each evaluation set will score: ``eval.max_samples`` at most, the synthetic held-out split's
    size, or the record count of the set's file under ``paths.data_dir`` (None when it is not there to count)."""
    cap, counts = cfg.eval.max_samples, {}
    for name in cfg.eval.datasets:
        if name not in EVAL_SETS:  # the synthetic data's held-out split
            total = int(cfg.dataset.test_size)
        else:
            path = Path(str(cfg.paths.data_dir or "")) / EVAL_SETS[name].path
            total = len(json.loads(path.read_text())) if cfg.paths.data_dir and path.is_file() else None
        counts[name] = min(cap, total) if cap and total else (cap or total)
    return counts


def plan(cfg: DictConfig, job_dir: Path, sweep: bool = False) -> dict[str, Any] | None:
    """Count the parameters of ``cfg``'s job on the meta device; write ``plan.json``. In a sweep, a combination
    without meaning (a placement or budget the kind cannot take) is recorded as ``skipped`` with its reason, as a
    training sweep records it, and None is returned; alone, it is an error."""
    try:
        return _plan(cfg, job_dir)
    except PlacementError as error:
        if not sweep:
            raise
        job_dir.mkdir(parents=True, exist_ok=True)
        write_json(job_dir / "plan.json", {"mode": "plan", "status": "skipped", "reason": str(error)})
        return None


def skip_reason(job_dir: Path) -> str:
    """Why the plan in ``job_dir`` was skipped (its plan.json)."""
    return str(json.loads((job_dir / "plan.json").read_text()).get("reason"))


def _plan(cfg: DictConfig, job_dir: Path) -> dict[str, Any]:
    validate(cfg)
    cfg = budget.apply(cfg)
    tokenizer = None if cfg.model.name_or_path else load_tokenizer(cfg.model)
    config = model_config(cfg.model, tokenizer, offline=True)
    adapter_cfg = OmegaConf.to_container(cfg.adapter, resolve=True)
    targets = adapters.targets_for(config, adapter_cfg, cfg.placement)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        adapters.prepare(model, adapter_cfg, targets)
    params = count_parameters(model)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    axes = job_axes(resolved)
    result = {
        "mode": "plan",
        "status": "ok",
        **{key: axes[key] for key in ("model", "adapter", "placement")},
        "axes": axes,
        "targets": len(targets),
        "params": params,
        "memory_gb": memory_gb(params, config.hidden_size, config.num_hidden_layers, cfg),
        "eval_questions": eval_questions(cfg),
        "config": resolved,
    }
    job_dir.mkdir(parents=True, exist_ok=True)
    write_json(job_dir / "plan.json", result)
    return result


def line(result: dict[str, Any]) -> str:
    """The one line plan mode prints."""
    p = result["params"]
    where = f"@{result['placement']}" if result["placement"] else ""
    model = result["config"]["model"]
    bits = " (8-bit base)" if model["load_in_8bit"] else " (4-bit base)" if model["load_in_4bit"] else ""
    return (
        f"{result['model']}{bits} {result['adapter']}{where}: {p['trainable']:,} trainable of {p['total']:,} "
        f"({p['trainable_pct']:.4f}%), training memory ~{result['memory_gb']['total']:.1f} GiB"
    )
