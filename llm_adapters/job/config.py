"""The checks a composed config passes before any model is loaded: one line naming the key for each problem."""

from __future__ import annotations

import importlib.util
import math

import torch
from omegaconf import DictConfig, OmegaConf

from llm_adapters import CONF_DIR
from llm_adapters.adapters import REGISTRY, known_kinds
from llm_adapters.adapters.placement import placement_sites
from llm_adapters.adapters.registry import KEY_RULES
from llm_adapters.data.loading import check_config as check_data
from llm_adapters.errors import ConfigError, did_you_mean
from llm_adapters.evaluation import check_config
from llm_adapters.evaluation.scoring import CHOICE_RULES
from llm_adapters.files import yaml_keys
from llm_adapters.model.loading import DTYPES
from llm_adapters.stats.power import assumptions

# Keys whose values count things: integers (a boolean is not one), checked before anything loads.
INTEGER_KEYS = (
    "seed",
    "train.batch_size",
    "train.micro_batch_size",
    "train.epochs",
    "train.cutoff_len",
    "train.log_every",
    "train.max_steps",
    "train.max_examples",
    "train.warmup_steps",
    "train.save_every",
    "train.val_set_size",
    "train.eval_every",
    "eval.batch_size",
    "eval.num_beams",
    "eval.max_new_tokens",
    "eval.max_samples",
    "dataset.train_size",
    "dataset.test_size",
)


def _number(cfg: DictConfig, key: str, integer: bool = False) -> int | float | None:
    """The value at ``key`` (None when unset), refused unless it is a finite number, or an integer if asked."""
    value = OmegaConf.select(cfg, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{key} must be {'an integer' if integer else 'a number'} (got {value!r})")
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number (got {value!r})")
    return value


def _positive(cfg: DictConfig, key: str) -> None:
    value = _number(cfg, key, integer=key in INTEGER_KEYS)
    if value is not None and value <= 0:
        raise ConfigError(f"{key} must be a positive number (got {value!r})")


def _numbers_in_range(cfg: DictConfig) -> None:
    """The numeric keys that may be zero, or are fractions, each in its own range."""
    for key in INTEGER_KEYS:
        _number(cfg, key, integer=True)
    seed = cfg.seed
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be between 0 and 2**32 - 1 (got {seed})")
    if cfg.dataset.source == "synthetic":  # a generated set of no records trains or scores nothing
        _positive(cfg, "dataset.train_size")
        _positive(cfg, "dataset.test_size")
    for key in ("train.warmup_steps", "train.weight_decay"):
        value = _number(cfg, key)
        if value is not None and value < 0:
            raise ConfigError(f"{key} must not be negative (got {value!r})")
    for key in ("train.max_grad_norm", "train.save_every", "train.loraplus_ratio"):
        value = _number(cfg, key)
        if value is not None and value <= 0:
            raise ConfigError(f"{key} must be positive, or null to turn it off (got {value!r})")
    if cfg.model.dtype not in DTYPES:
        raise ConfigError(f"model.dtype must be one of {', '.join(DTYPES)} (got '{cfg.model.dtype}')")
    if cfg.device != "auto":
        try:
            torch.device(str(cfg.device))
        except (RuntimeError, ValueError):
            raise ConfigError(f"device={cfg.device} is not a torch device (auto, cpu, cuda, cuda:1, mps ...)") from None
    if str(cfg.device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={cfg.device} but this machine has no CUDA GPU (device=auto picks what there is)")


def _adapter_values(cfg: DictConfig) -> None:
    """The adapter keys the kind's record (and its parts') gives a rule: fixed choices (``adapter.init``,
    ``adapter.non_linearity``) and numeric rules (``KEY_RULES``: a count, a positive number, a probability)."""
    adapter = cfg.adapter
    record = REGISTRY[adapter.kind]
    for part in [record, *(REGISTRY[p] for p in record.parts)]:
        for key, allowed in part.choices.items():
            if key in adapter and adapter[key] not in allowed:
                if len(allowed) > 8:  # the activations
                    raise ConfigError(f"adapter.{key} '{adapter[key]}' is not a transformers activation (e.g. tanh)")
                raise ConfigError(f"adapter.{key} must be one of {', '.join(map(str, allowed))} (got '{adapter[key]}')")
        for key, rule in part.keys.items():
            value = _number(cfg, f"adapter.{key}", integer=rule == "count")
            if value is None:
                continue
            if (rule == "probability" and not 0 <= value < 1) or (rule != "probability" and value <= 0):
                raise ConfigError(f"adapter.{key} must be {KEY_RULES[rule]} (got {value!r})")


# What a study file (conf/sweep/) adds at the top, and plan mode's power assumptions (llm_adapters/stats/power.py).
STUDY_KEYS = ("per_adapter", "per_run", "grid", "grid_point", "power")


def _no_unknown_keys(cfg: DictConfig) -> None:
    """A key nothing reads (``+eval.num_beam=1`` for ``num_beams``, ``+foo=bar``) would be saved in the config and
    ignored: refused, naming the closest key. A group's keys are those any of its options defines (what a study
    may set); the adapter's are its kind's (``_no_unknown_adapter_keys``)."""
    groups = [p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in ("base", "hydra", "sweep")]
    top = [str(k) for k in OmegaConf.load(CONF_DIR / "config.yaml") if k not in ("defaults", "hydra")]
    known_top = [*top, *groups, *STUDY_KEYS]
    for key in (str(k) for k in cfg):
        if key not in known_top:
            raise ConfigError(f"{key}: the config has no such key{did_you_mean(key, known_top)}; nothing would read it")
    for group in (g for g in groups if g not in ("adapter", "experiment") and isinstance(cfg.get(g), DictConfig)):
        known = sorted({k for option in (CONF_DIR / group).glob("*.yaml") for k in yaml_keys(option)})
        for key in (str(k) for k in cfg[group]):
            if key not in known:
                raise ConfigError(
                    f"{group}.{key}: no {group} option reads such a key{did_you_mean(key, known, group + '.')}"
                )


def _no_unknown_adapter_keys(adapter: DictConfig) -> None:
    """A key the kind does not read (``+adapter.rank=8`` for ``r``) would be saved in the config and ignored by the
    run: refused, naming the keys the kind reads (those of its conf/adapter/<kind>.yaml and what it builds on)."""
    path = CONF_DIR / "adapter" / f"{adapter.kind}.yaml"
    if (check := REGISTRY[adapter.kind].check_keys) is not None:
        check(OmegaConf.to_container(adapter, resolve=True))
        return
    if not path.is_file():
        return
    known = yaml_keys(path)
    unknown = [key for key in adapter if key not in known]
    if unknown:
        name, keys = str(unknown[0]), [str(k) for k in known]
        hint = did_you_mean(name, keys)
        raise ConfigError(
            f"adapter.{name}: adapter '{adapter.kind}' reads no such key{hint}; it reads {', '.join(keys)}"
        )


# Keys that must be positive where set (null turns the optional ones off).
POSITIVE_KEYS = (
    "train.batch_size",
    "train.micro_batch_size",
    "train.epochs",
    "train.lr",
    "train.cutoff_len",
    "train.log_every",
    "train.max_steps",
    "train.max_examples",
    "train.eval_every",
    "eval.batch_size",
    "eval.num_beams",
    "eval.max_new_tokens",
    "eval.max_samples",
)


def _placement(cfg: DictConfig) -> None:
    """Layers and sites that name something, and a placement the kind has a meaning at."""
    kind, layers = cfg.adapter.kind, cfg.placement.get("layers")
    if layers is not None and not len(layers):
        raise ConfigError("placement.layers=[] names no layer: list layer indices, or null for every layer")
    if cfg.placement.get("sites") is not None and not len(cfg.placement.sites):
        raise ConfigError("placement.sites=[] names no site: list the sites, or null for the preset's")
    if layers is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in layers):
        raise ConfigError(f"placement.layers must be layer indices, integers (got {list(layers)})")
    if REGISTRY[kind].placed:
        placement_sites(cfg.placement, kind, REGISTRY[kind].presets)


def _data(cfg: DictConfig) -> None:
    """A training source that exists, and evaluation sets this harness can read (``data.loading``) and score."""
    check_data(cfg)
    check_config(cfg.eval)
    if "mawps" in cfg.eval.datasets and not cfg.protocol.score_mawps:
        raise ConfigError(
            "eval.datasets has mawps, which the paper's evaluate.py cannot score: "
            "use protocol=fixed or protocol.score_mawps=true"
        )


def validate(cfg: DictConfig) -> None:
    """Reject a config that cannot run, in milliseconds, with one message naming the key."""
    if cfg.mode not in ("train", "eval", "plan"):
        raise ConfigError(f"mode must be 'train', 'eval' or 'plan' (got '{cfg.mode}')")
    if cfg.mode == "eval" and not cfg.adapter_path and cfg.adapter.kind != "none":
        raise ConfigError(
            "mode=eval needs adapter_path=DIR, the adapter/ directory of a finished job (or adapter=none)"
        )
    _numbers_in_range(cfg)
    kind = cfg.adapter.kind
    if kind not in known_kinds():
        raise ConfigError(f"adapter.kind '{kind}' is unknown (known: {', '.join(known_kinds())})")
    _no_unknown_keys(cfg)
    try:
        assumptions(cfg.get("power"))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    _no_unknown_adapter_keys(cfg.adapter)
    _adapter_values(cfg)
    _placement(cfg)
    for key in POSITIVE_KEYS:
        _positive(cfg, key)
    batch, micro = cfg.train.batch_size, cfg.train.micro_batch_size
    if batch % micro:
        raise ConfigError(f"train.micro_batch_size {micro} does not divide train.batch_size {batch}")
    _data(cfg)
    if cfg.model.load_in_8bit or cfg.model.load_in_4bit:
        if not cfg.model.name_or_path:
            raise ConfigError("model.load_in_8bit/load_in_4bit quantize pretrained weights: set model.name_or_path")
        if cfg.mode != "plan" and (importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available()):
            raise ConfigError("model.load_in_8bit/load_in_4bit need the bitsandbytes package and a CUDA GPU")
    if cfg.train.keep not in ("best", "last"):
        raise ConfigError(f"train.keep must be best or last (got '{cfg.train.keep}')")
    if cfg.train.keep == "best" and not cfg.train.val_set_size:
        raise ConfigError("train.keep=best picks by validation loss: set train.val_set_size (the paper used 120)")
    if cfg.train.val_set_size < 0:
        raise ConfigError(f"train.val_set_size must not be negative (got {cfg.train.val_set_size})")
    if cfg.train.autocast not in (None, "bfloat16", "float16"):
        raise ConfigError(f"train.autocast must be null, bfloat16 or float16 (got '{cfg.train.autocast}')")
    if cfg.eval.autocast not in (None, "bfloat16", "float16"):
        raise ConfigError(f"eval.autocast must be null, bfloat16 or float16 (got '{cfg.eval.autocast}')")
    rule = cfg.protocol.choice_extraction
    if rule not in CHOICE_RULES:
        raise ConfigError(f"protocol.choice_extraction must be one of {', '.join(CHOICE_RULES)} (got '{rule}')")
