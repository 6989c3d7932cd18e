"""llm-adapters: a research harness for adapter-based PEFT of causal LMs (LLM-Adapters, Hu et al., EMNLP 2023)."""

__version__ = "0.1.0"
