"""Reporting iterates over what an evaluation method declares (``Method.metrics``, ``Method.row_fields``), never
over a method's name: every method runs end to end with every logger, W&B offline included, and its W&B summary
and prediction table hold what it declared."""

from __future__ import annotations

import json

import pytest

from llm_adapters.evaluation import METHODS
from llm_adapters.job.recipe import run
from llm_adapters.job.tracking import wandb_summary
from tests.helpers.configs import FAST, QUICK, make_config

LOGGERS = ["none", "wandb"]


def overrides(name: str, request) -> list[str]:
    if name == "generate":
        return list(FAST)
    shared_data = request.getfixturevalue("shared_data")  # the commonsense files: skipped where they are absent
    data = [f"paths.data_dir={shared_data}", "dataset=arc_e", "train.max_examples=16", "eval=commonsense"]
    return [*QUICK, *data, "eval.datasets=[arc_e]", f"eval.method={name}", "eval.max_samples=4"]


# W&B costs ~10 s a job to start: the quick suite keeps the likelihood case (the one that once failed after
# evaluating), the slow suite the rest.
CASES = [
    pytest.param(name, logger, marks=[pytest.mark.slow] if logger == "wandb" and name != "loglik" else [])
    for name in sorted(METHODS)
    for logger in LOGGERS
]


@pytest.mark.parametrize("name,logger", CASES)
def test_every_method_runs_with_every_logger(tmp_path, request, name, logger):
    cfg = make_config(*overrides(name, request), f"logger={logger}")
    results = run(cfg, tmp_path)
    assert results["status"] == "ok", results.get("reason")
    declared = METHODS[name]
    rows = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert rows and all(set(declared.row_fields) <= set(row) for row in rows)
    for metrics in results["eval"].values():
        assert all(0 <= metrics[key] <= 100 for key in declared.metrics)
    summary = wandb_summary(results)  # what the W&B run's summary is given
    for name_of_set, metrics in results["eval"].items():
        assert all(summary[f"eval/{name_of_set}/{key}"] == metrics[key] for key in declared.metrics)
    if logger == "wandb":  # the offline run's prediction table has the declared columns
        (table,) = tmp_path.glob("wandb/offline-run-*/files/media/table/predictions_*.table.json")
        written = json.loads(table.read_text())
        assert written["columns"] == list(declared.row_fields) and len(written["data"]) == len(rows)
