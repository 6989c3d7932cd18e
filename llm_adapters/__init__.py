"""llm-adapters: a research harness for adapter-based PEFT of causal LMs (LLM-Adapters, Hu et al., EMNLP 2023)."""

from pathlib import Path

__version__ = "0.1.0"

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"  # the project's Hydra configs, beside the package
