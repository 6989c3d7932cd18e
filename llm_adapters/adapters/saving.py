"""Saved adapters: safetensors weights beside a small JSON config that says what they adapt and where.

``adapter_config.json`` holds the adapter config, the model it was trained on, that model's type, and every target
(site, layer, module), so ``mode=eval adapter_path=DIR`` rebuilds exactly the trained structure. LoRA is also saved
in PEFT's format (``peft/``), which ``peft.PeftModel.from_pretrained`` loads, and a PEFT LoRA directory can be given
as ``adapter_path``. Nothing is ever unpickled: weights are safetensors, configs are JSON.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import PretrainedConfig

from llm_adapters.adapters import adapter_state_dict, known_kinds, load_adapter_state, spec
from llm_adapters.adapters.placement import Target
from llm_adapters.adapters.registry import PEFT_PREFIX
from llm_adapters.errors import AdapterFileError
from llm_adapters.files import write_json, written_whole

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
PEFT_DIR = "peft"
RANDOM_STATE = "random_state.safetensors"  # the random generators as training left them: what evaluation starts from


def _write(directory: Path, weights: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({name: value.detach().cpu().contiguous() for name, value in weights.items()}, str(directory / WEIGHTS))
    write_json(directory / CONFIG, config)


def save(
    model: torch.nn.Module,
    adapter_cfg: Mapping,
    model_name: str,
    targets: Sequence[Target],
    directory: Path,
    trained_on: Mapping[str, Any] | None = None,
    job: Mapping[str, Any] | None = None,
    random_state: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Write the trainable weights and the config that rebuilds their structure (and, for a kind with a PEFT
    equivalent, PEFT's format in ``peft/``). ``trained_on``: the job's axes it was trained at (its dataset and
    placement), which a later ``mode=eval`` of it records as its own. ``job``: the config hash of the job that
    trained it and its training record, so that a rerun recognises its own finished training even when the job's
    results.json is lost or was never written (``job_record``). ``random_state``: the random generators at the end of
    training, which every evaluation of the adapter starts from (``random_state``), so a re-evaluation draws what
    the uninterrupted job drew (the paper's protocol keeps adapter dropout on while generating).

    Everything is written into a sibling folder first and renamed into place at the end: a job killed while saving
    leaves no adapter directory that looks complete, so its checkpoints (deleted only after this) still count.
    """
    partial = directory.with_name(f".{directory.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    config = {
        "adapter": dict(adapter_cfg),
        "model": model_name,
        "model_type": model.config.model_type,
        "targets": [{"site": t.site, "layer": t.layer, "module": t.module_name, "sliced": t.sliced} for t in targets],
        "trained_on": dict(trained_on or {}),
        "job": dict(job or {}),
    }
    export = spec(adapter_cfg["kind"]).export
    with written_whole(directory, partial):
        _write(partial, adapter_state_dict(model), config)
        if random_state:
            save_file(dict(random_state), str(partial / RANDOM_STATE))
        if export is not None and (exported := export(model, adapter_cfg, model_name, targets)) is not None:
            _write(partial / PEFT_DIR, *exported)


def trained_on(directory: Path) -> dict[str, Any]:
    """The axes a saved adapter was trained at (empty for one saved before they were recorded, or not ours)."""
    path = directory / CONFIG
    try:
        return dict(json.loads(path.read_text()).get("trained_on") or {})
    except (OSError, ValueError, AttributeError):
        return {}


def job_record(directory: Path) -> dict[str, Any] | None:
    """What a saved adapter says of the job that trained it (``config_hash``, ``train``), or None: no complete
    adapter there, or one saved before adapters carried it (or not ours)."""
    try:
        record = json.loads((directory / CONFIG).read_text()).get("job") or None
    except (OSError, ValueError, AttributeError):
        return None
    return record if (directory / WEIGHTS).is_file() and isinstance(record, dict) else None


def random_state(directory: Path) -> dict[str, torch.Tensor] | None:
    """The random generators' state saved with an adapter at the end of its training, if any."""
    path = directory / RANDOM_STATE
    return load_file(str(path)) if path.is_file() else None


def read_config(directory: Path, config: PretrainedConfig) -> tuple[dict[str, Any], list[Target]]:
    """The saved adapter config and targets, checked against the model they are about to be put on."""
    path = directory / CONFIG
    if not path.is_file() or not (directory / WEIGHTS).is_file():
        raise AdapterFileError(f"adapter_path {directory}: no saved adapter ({CONFIG} and {WEIGHTS}) there")
    try:
        saved = json.loads(path.read_text())
        with safe_open(str(directory / WEIGHTS), framework="pt"):  # the header only: a damaged file fails here
            pass
    except (ValueError, OSError, SafetensorError) as error:  # before the base model loads: minutes for a 7B
        raise AdapterFileError(f"adapter_path {directory}: cannot be read ({type(error).__name__}: {error})") from None
    if "peft_type" in saved:  # a PEFT checkpoint: read by the kind PEFT calls by that name
        readers = {s.peft_type: s.peft_read for s in map(spec, known_kinds()) if s.peft_read is not None}
        if saved["peft_type"] not in readers:
            raise AdapterFileError(
                f"adapter_path {directory}: a PEFT {saved['peft_type']} checkpoint cannot be imported (only "
                f"{', '.join(sorted(readers))})"
            )
        return readers[saved["peft_type"]](saved, list(load_file(str(directory / WEIGHTS))), config, str(directory))
    missing = [key for key in ("adapter", "model_type", "targets") if key not in saved]
    if missing:
        raise AdapterFileError(f"adapter_path {directory}: {CONFIG} lacks {', '.join(missing)}")
    if saved["model_type"] != config.model_type:
        raise AdapterFileError(
            f"adapter_path {directory} holds an adapter for model type '{saved['model_type']}', "
            f"not this model's '{config.model_type}'"
        )
    targets = [Target(t["site"], t["layer"], t["module"], t.get("sliced", False)) for t in saved["targets"]]
    if beyond := sorted({t.layer for t in targets if t.layer >= config.num_hidden_layers}):
        raise AdapterFileError(
            f"adapter_path {directory} adapts layer(s) {beyond}, but this model has {config.num_hidden_layers} layers"
        )
    return saved["adapter"], targets


def load_weights(model: torch.nn.Module, directory: Path) -> None:
    """Copy the saved weights into a model built with the saved structure; every tensor must fit."""
    weights = {k.removeprefix(PEFT_PREFIX): v for k, v in load_file(str(directory / WEIGHTS)).items()}
    if (problem := load_adapter_state(model, weights)) is not None:
        raise AdapterFileError(f"adapter_path {directory}: {problem}")
