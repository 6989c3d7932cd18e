"""A tiny placement sweep in a subprocess, then its tables and figures: every job appears, the numbers equal the
results.json files, the figures are valid PNGs showing the expected series; and the paper's cells line up."""

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import tables
from analysis.tables import table
from tests.helpers.configs import FAST
from tests.helpers.processes import run_py

SMOKE = ["dataset=synthetic_math", "train=tiny", "eval=synthetic", *FAST]


@pytest.fixture(scope="module")
def placement_sweep(tmp_path_factory):
    """The placement study's sweep file on the embedded default: LoRA and prefix tuning × 3 placements × 2 seeds
    (prefix tuning has no MLP placement: those jobs are skipped with the reason)."""
    root = tmp_path_factory.mktemp("sweep")
    proc = run_py("-m", "+sweep=placement", "adapter=lora,prefix", "seed=1,2", *SMOKE, f"hydra.sweep.dir={root}")
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-3000:]
    assert f"sweep {root}: 12 jobs, 8 ok, 0 failed, 4 skipped" in out
    return root


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_tables_and_figures_from_a_sweep(placement_sweep, tmp_path):
    written = tables([placement_sweep], tmp_path)
    jobs = pd.read_csv(tmp_path / "jobs.csv")
    assert len(jobs) == 12 and written["statuses"] == {"ok": 8, "skipped": 4}
    assert {reason.split(" (")[0] for reason in jobs[jobs["status"] == "skipped"]["reason"]} == {
        "placement 'mlp' has no meaning for adapter 'prefix'",
        "placement 'both' has no meaning for adapter 'prefix'",
    }

    numbers = pd.read_csv(tmp_path / "math_table.csv")
    assert sorted(zip(numbers["adapter"], numbers["placement"], strict=True)) == [
        ("lora", "attn"),
        ("lora", "both"),
        ("lora", "mlp"),
        ("prefix", "attn"),
    ]
    assert set(numbers["seeds"]) == {2}
    accuracy, share = {}, {}
    for path in placement_sweep.glob("*/results.json"):
        results = json.loads(path.read_text())
        if results["status"] == "ok":
            key = (results["adapter"], results["placement"])
            accuracy.setdefault(key, []).append(results["eval"]["synthetic_math"]["accuracy"])
            share[key] = results["params"]["trainable_pct"]
    for (adapter, placement), values in accuracy.items():
        mine = numbers[(numbers["adapter"] == adapter) & (numbers["placement"] == placement)]
        assert mine["synthetic_math"].item() == pytest.approx(np.mean(values))
        assert mine["synthetic_math std"].item() == pytest.approx(np.std(values, ddof=1), nan_ok=True)
        assert mine["trainable %"].item() == pytest.approx(share[(adapter, placement)])
    assert "| model" in (tmp_path / "math_table.md").read_text()
    assert r"\toprule" in (tmp_path / "math_table.tex").read_text()

    image = matplotlib.image.imread(tmp_path / "math_placement.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert not (tmp_path / "math_configuration.png").exists()  # one size per adapter: nothing to plot
    assert {a: sorted(p) for a, p in written["math_placement"].items()} == {
        "lora": ["attn", "both", "mlp"],
        "prefix": ["attn"],
    }
    assert written["math_configuration"] == {}


def test_paper_cells_sit_beside_matching_rows():
    sets = ["multiarith", "gsm8k", "addsub", "aqua", "singleeq", "svamp"]
    row = {
        "job": "x",
        "status": "ok",
        "model": "llama-7b",
        "adapter": "lora",
        "placement": "best",
        "size": 32,
        "train_set": "math_10k",
        "protocol": "paper",
        "seed": 42,
        "trainable_pct": 0.8,
        **{f"acc/{s}": 50.0 for s in sets},
    }
    other = {**row, "job": "y", "size": 8}  # not the paper's setting: no paper number
    numbers = table(pd.DataFrame([row, other]), "math")
    paper = (95.0 + 37.5 + 83.3 + 18.9 + 84.4 + 52.1) / 6  # Table 3, LLaMA-7B LoRA
    assert numbers.loc[numbers["size"] == 32, "paper Avg"].item() == pytest.approx(paper)
    assert numbers.loc[numbers["size"] == 32, "Δ Avg"].item() == pytest.approx(50.0 - paper)
    assert np.isnan(numbers.loc[numbers["size"] == 8, "paper Avg"].item())


@pytest.mark.slow  # reads a whole sweep run by the module fixture: CI's second pass
def test_wandb_runs_read_back_like_results_files(placement_sweep):
    """--wandb reads runs through the same row() as results.json: a run's config and summary give the same row."""
    from analysis.collect import results_from_wandb, row
    from llm_adapters.job.tracking import wandb_summary

    for path in placement_sweep.glob("*/results.json"):
        results = json.loads(path.read_text())
        if results["status"] != "ok":
            continue
        from_run = row(results_from_wandb(results["config"], wandb_summary(results)), "run")
        from_file = row(results, "run")
        assert from_run == from_file


@pytest.mark.slow  # reads a whole sweep run by the module fixture: CI's second pass
def test_study_notebook_runs_top_to_bottom(placement_sweep, tmp_path):
    import os
    import subprocess
    import sys

    import nbformat

    from tests.helpers.configs import ROOT

    env = {**os.environ, "RESULTS_DIRS": str(placement_sweep), "STUDY_OUT": str(tmp_path / "out"), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--output-dir",
            str(tmp_path),
            str(ROOT / "analysis" / "study.ipynb"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    executed = nbformat.read(tmp_path / "study.ipynb", as_version=4)
    text = json.dumps([cell.get("outputs", []) for cell in executed.cells])
    assert "tiny-llama" in text and "placement:" in text
    assert (tmp_path / "out" / "placement.png").is_file() and not (tmp_path / "out" / "configuration.png").exists()


def test_the_eval_groups_are_the_paper_tables_columns():
    """conf/eval/math.yaml and commonsense.yaml evaluate exactly the sets of the paper's Tables 3 and 4, in order: the
    tables the analysis writes compare column by column with analysis/paper.py's numbers."""
    from omegaconf import OmegaConf

    from analysis.paper import COMMONSENSE_SETS, MATH_SETS
    from llm_adapters import CONF_DIR

    assert list(OmegaConf.load(CONF_DIR / "eval" / "math.yaml").datasets) == MATH_SETS
    assert list(OmegaConf.load(CONF_DIR / "eval" / "commonsense.yaml").datasets) == COMMONSENSE_SETS


def test_comparison_labels_leave_out_absent_settings_and_pandas_float_sizes():
    from analysis.compare import _label

    zero_shot = {"adapter": "none", "placement": float("nan"), "size": float("nan")}
    series = {"adapter": "series", "placement": "attn", "size": 256.0}
    assert _label(zero_shot, ["adapter", "placement", "size"]) == "none"
    assert _label(series, ["adapter", "placement", "size"]) == "series@attn size=256"
    assert _label({"adapter": "lora", "placement": "both", "cfg/train.lr": 0.0003}, ["cfg/train.lr"]) == (
        "lora@both train.lr=0.0003"
    )
