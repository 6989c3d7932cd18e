"""Saved adapters: safetensors weights beside a small JSON config that says what they adapt and where.

``adapter_config.json`` holds the adapter config, the model it was trained on, that model's type, and every target
(site, layer, module), so ``mode=eval adapter_path=DIR`` rebuilds exactly the trained structure. Nothing is ever
unpickled: weights are safetensors, the config is JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import PretrainedConfig

from llm_adapters.adapters import trainable_state_dict
from llm_adapters.datasets import DataError
from llm_adapters.placement import Target
from llm_adapters.tracking import write_json

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def save(
    model: torch.nn.Module, adapter_cfg: Mapping, model_name: str, targets: Sequence[Target], directory: Path
) -> None:
    """Write the trainable weights and the config that rebuilds their structure."""
    directory.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state_dict(model), str(directory / WEIGHTS))
    write_json(
        directory / CONFIG,
        {
            "adapter": dict(adapter_cfg),
            "model": model_name,
            "model_type": model.config.model_type,
            "targets": [{"site": t.site, "layer": t.layer, "module": t.module_name} for t in targets],
        },
    )


def read_config(directory: Path, config: PretrainedConfig) -> tuple[dict[str, Any], list[Target]]:
    """The saved adapter config and targets, checked against the model they are about to be put on."""
    path = directory / CONFIG
    if not path.is_file() or not (directory / WEIGHTS).is_file():
        raise DataError(f"adapter_path {directory}: no saved adapter ({CONFIG} and {WEIGHTS}) there")
    saved = json.loads(path.read_text())
    if saved["model_type"] != config.model_type:
        raise DataError(
            f"adapter_path {directory} holds an adapter for model type '{saved['model_type']}', "
            f"not this model's '{config.model_type}'"
        )
    targets = [Target(t["site"], t["layer"], t["module"]) for t in saved["targets"]]
    return saved["adapter"], targets


def load_weights(model: torch.nn.Module, directory: Path) -> None:
    """Copy the saved weights into a model built with the saved structure; every tensor must fit."""
    weights = load_file(str(directory / WEIGHTS))
    params = dict(model.named_parameters())
    trainable = {name for name, p in params.items() if p.requires_grad}
    if set(weights) != trainable:
        raise DataError(f"adapter_path {directory}: its weights do not match the adapter built from its config")
    with torch.no_grad():
        for name, value in weights.items():
            if params[name].shape != value.shape:
                raise DataError(
                    f"adapter_path {directory}: {name} has shape {tuple(value.shape)}, "
                    f"the model expects {tuple(params[name].shape)}"
                )
            params[name].copy_(value)
