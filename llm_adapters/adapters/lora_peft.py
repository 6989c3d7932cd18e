"""LoRA in PEFT's format, both ways: the export written beside every saved LoRA (``peft/``, which
``peft.PeftModel.from_pretrained`` loads onto the unmodified base), and the import that makes a PEFT LoRA directory
an ``adapter_path``. The LoRA kind's record carries both (``export``, ``peft_read``); ``saving`` asks the record."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from llm_adapters.adapters.lora_init import FROM_THE_BASE
from llm_adapters.adapters.placement import Target
from llm_adapters.adapters.registry import PEFT_PREFIX
from llm_adapters.errors import AdapterFileError
from llm_adapters.model.architectures import architecture_of


def export(
    model: nn.Module, adapter_cfg: Mapping, model_name: str, targets: Sequence[Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The same LoRA in PEFT's format (none for a slice of a fused projection: PEFT has no such thing). A PiSSA or
    OLoRA adapter is written as PEFT writes one converted for an unmodified base (its
    ``path_initial_model_for_weight_conversion``)."""
    if any(t.sliced for t in targets):
        return None
    weights, transposed = {}, False
    moved = adapter_cfg.get("init", "default") in FROM_THE_BASE
    for target in targets:
        module = model.get_submodule(target.module_name)
        transposed |= isinstance(module.base_layer, Conv1D)
        a, b = module.lora_A.weight, module.lora_B.weight
        if moved:  # PEFT's conversion: rank 2r, [A; A₀] and [B, −B₀], so s (B A − B₀ A₀) on the unmodified base
            a, b = torch.cat([a, module.lora_A0]), torch.cat([b, -module.lora_B0], dim=1)
        weights[f"{PEFT_PREFIX}{target.module_name}.lora_A.weight"] = a
        weights[f"{PEFT_PREFIX}{target.module_name}.lora_B.weight"] = b
    rslora = bool(adapter_cfg.get("rslora", False))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": model_name,
        "r": 2 * adapter_cfg["r"] if moved else adapter_cfg["r"],
        # the same scaling at twice the rank: alpha doubled for alpha / r, times √2 for alpha / √r
        "lora_alpha": adapter_cfg["alpha"] * ((math.sqrt(2) if rslora else 2) if moved else 1),
        "lora_dropout": adapter_cfg["dropout"],
        "target_modules": [t.module_name for t in targets],  # full names: PEFT matches them exactly
        "bias": "none",
        "fan_in_fan_out": transposed,  # PEFT's flag for GPT-2's Conv1D; the LoRA weights are the same
        "use_dora": False,
        "use_rslora": rslora,
        "init_lora_weights": "gaussian" if adapter_cfg.get("init") == "gaussian" else True,
        "inference_mode": True,
    }
    return weights, config


def read(saved: Mapping[str, Any], names: Sequence[str], config: Any, where: str) -> tuple[dict, list[Target]]:
    """A PEFT LoRA checkpoint (its ``adapter_config.json`` and weight ``names``) as our adapter config and targets,
    the sites found through the architecture's site table; ``where`` names the directory in errors."""
    unsupported = [k for k in ("use_dora", "use_rslora") if saved.get(k)]
    if unsupported or saved.get("bias", "none") != "none":
        raise AdapterFileError(f"adapter_path {where}: only plain PEFT LoRA can be imported ({unsupported or 'bias'})")
    arch = architecture_of(config)
    modules = sorted({name.removeprefix(PEFT_PREFIX).rsplit(".lora_", 1)[0] for name in names})
    targets = []
    for module in modules:
        layer_text, _, inner = module.removeprefix(arch.layers + ".").partition(".")
        sites = [site for site, name in arch.sites.items() if name == inner]
        if not module.startswith(arch.layers + ".") or not layer_text.isdigit() or not sites:
            raise AdapterFileError(
                f"adapter_path {where}: {module} is not a projection of model type '{config.model_type}'"
            )
        targets.append(Target(sites[0], int(layer_text), module))
    adapter = {"kind": "lora", "r": saved["r"], "alpha": saved["lora_alpha"], "dropout": saved.get("lora_dropout", 0.0)}
    return adapter, targets
