"""llm-adapters: a research harness for adapter-based PEFT of causal LMs (LLM-Adapters, Hu et al., EMNLP 2023)."""

from pathlib import Path

__version__ = "0.1.0"

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"  # the project's Hydra configs, beside the package
# The LLM-Adapters data files of this workspace, in ../shared beside the repository (tests and benchmarks read
# them from here when present; jobs take paths.data_dir).
SHARED_DATA = CONF_DIR.parent.parent / "shared" / "datasets" / "llm-adapters"
