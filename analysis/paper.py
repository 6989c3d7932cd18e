"""The paper's reported accuracies (reference doc §2.1 Table 3 and §2.3 Table 4), to set beside a job's own
numbers wherever the job's setting matches a cell of the paper."""

from __future__ import annotations

MATH_SETS = ["multiarith", "gsm8k", "addsub", "aqua", "singleeq", "svamp"]
COMMONSENSE_SETS = ["boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"]

_MATH = {  # Table 3, columns MATH_SETS
    ("bloomz-7b1", "prefix"): [68.8, 13.8, 47.1, 12.5, 49.4, 24.1],
    ("bloomz-7b1", "series"): [80.7, 14.3, 72.6, 20.5, 69.3, 38.1],
    ("bloomz-7b1", "parallel"): [85.8, 18.5, 77.7, 18.9, 74.8, 36.4],
    ("bloomz-7b1", "lora"): [82.8, 17.4, 72.4, 21.3, 69.9, 41.0],
    ("gpt-j-6b", "prefix"): [74.5, 16.0, 65.6, 14.7, 61.4, 31.0],
    ("gpt-j-6b", "series"): [91.7, 19.5, 85.8, 15.0, 81.7, 43.6],
    ("gpt-j-6b", "parallel"): [92.2, 18.9, 83.8, 17.9, 80.7, 41.1],
    ("gpt-j-6b", "lora"): [90.7, 23.0, 84.1, 16.1, 84.1, 46.0],
    ("llama-7b", "prefix"): [63.2, 24.4, 57.0, 14.2, 55.3, 38.1],
    ("llama-7b", "series"): [92.8, 33.3, 80.0, 15.0, 83.5, 52.3],
    ("llama-7b", "parallel"): [94.5, 35.3, 86.6, 18.1, 86.0, 49.6],
    ("llama-7b", "lora"): [95.0, 37.5, 83.3, 18.9, 84.4, 52.1],
    ("llama-13b", "prefix"): [72.2, 31.1, 56.0, 15.7, 62.8, 41.4],
    ("llama-13b", "series"): [93.0, 44.0, 80.5, 22.0, 87.6, 50.8],
    ("llama-13b", "parallel"): [94.3, 43.3, 83.0, 20.5, 89.6, 55.7],
    ("llama-13b", "lora"): [94.8, 47.5, 87.3, 18.5, 89.8, 54.6],
}
_COMMONSENSE = {  # Table 4, columns COMMONSENSE_SETS
    ("bloomz-7b1", "prefix"): [45.6, 53.7, 46.3, 26.7, 49.5, 52.1, 39.7, 44.3],
    ("bloomz-7b1", "series"): [65.4, 70.4, 73.6, 53.4, 69.3, 72.3, 55.9, 68.0],
    ("bloomz-7b1", "parallel"): [64.1, 71.5, 72.1, 52.9, 67.0, 70.5, 54.7, 69.6],
    ("bloomz-7b1", "lora"): [65.9, 75.3, 74.5, 57.3, 72.5, 74.6, 57.8, 73.4],
    ("gpt-j-6b", "prefix"): [63.1, 66.9, 68.7, 34.4, 64.5, 64.4, 46.8, 59.0],
    ("gpt-j-6b", "series"): [62.1, 63.5, 72.3, 30.6, 68.0, 63.9, 48.1, 63.8],
    ("gpt-j-6b", "parallel"): [62.2, 69.7, 70.0, 41.7, 65.0, 60.2, 44.6, 58.2],
    ("gpt-j-6b", "lora"): [62.4, 68.6, 49.5, 43.1, 57.3, 43.4, 31.0, 46.6],
    ("llama-7b", "prefix"): [64.3, 76.8, 73.9, 42.1, 72.1, 72.9, 54.0, 60.6],
    ("llama-7b", "series"): [63.0, 79.2, 76.3, 67.9, 75.7, 74.5, 57.1, 72.4],
    ("llama-7b", "parallel"): [67.9, 76.4, 78.8, 69.8, 78.9, 73.7, 57.3, 75.2],
    ("llama-7b", "lora"): [68.9, 80.7, 77.4, 78.1, 78.8, 77.8, 61.3, 74.8],
    ("llama-13b", "prefix"): [65.3, 75.4, 72.1, 55.2, 68.6, 79.5, 62.9, 68.0],
    ("llama-13b", "series"): [71.8, 83.0, 79.2, 88.1, 82.4, 82.5, 67.3, 81.8],
    ("llama-13b", "parallel"): [72.5, 84.8, 79.8, 92.1, 84.7, 84.2, 71.2, 82.4],
    ("llama-13b", "lora"): [72.1, 83.5, 80.5, 90.5, 83.7, 82.8, 68.3, 82.4],
}
# The setting behind those cells: training set, placement, size (reference doc §4, §12).
TRAINING_SET = {"math": "math_10k", "commonsense": "commonsense_170k"}
SETTING = {"prefix": 10, "series": 256, "parallel": 256, "lora": 32}


def reported(domain: str, model: str, adapter: str, dataset: str) -> float | None:
    """The paper's accuracy for one cell, or None when the paper has no such cell."""
    table, columns = (_MATH, MATH_SETS) if domain == "math" else (_COMMONSENSE, COMMONSENSE_SETS)
    row = table.get((model, adapter))
    return row[columns.index(dataset)] if row is not None and dataset in columns else None
