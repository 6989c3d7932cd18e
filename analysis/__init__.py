"""Results → pandas → the paper's tables and figures: ``python -m analysis tables RESULTS_DIR... [--out DIR]``."""
