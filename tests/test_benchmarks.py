"""Every documented benchmark runs as benchmarks/README.md says (``python -m benchmarks.<name>``), here at its
smallest size, and ends with one JSON line carrying the figures the README documents and the machine they were
measured on."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from llm_adapters.adapters import adapter_kinds
from tests.helpers.configs import ROOT

TINY = ["--hidden", "64", "--layers", "1", "--repeats", "1"]
MACHINE = {"cpu", "cpu_flags", "threads", "torch", "torch_cpu_capability"}

# name -> (its smallest arguments, the keys its JSON line must have)
BENCHMARKS = {
    "train_throughput": (
        TINY,
        {"lora_vs_peft", "train_tokens_vs_paper", "tokens_per_second", "seconds", "full_vs_floor", "lora_bf16_vs_fp32"}
        | {f"{kind}_vs_floor" for kind in adapter_kinds()},
    ),
    "eval_speed": (
        ["--hidden", "64", "--layers", "1", "--prompts", "2", "--new-tokens", "2", "--batch-size", "2", "--arc", "2"],
        {"eval_speedup", "predictions_identical", "vs_transformers_beam_search", "greedy_vs_beam", "seconds"}
        | {"loglik_vs_generate", "loglik_questions_per_second", "loglik_lm_eval_vs_generate"}
        | {"loglik_lm_eval_questions_per_second", "loglik_bf16_vs_fp32", "generate_bf16_vs_fp32"},
    ),
    "memory": (["--hidden", "64", "--layers", "1"], {f"{kind}_mem_vs_full" for kind in adapter_kinds()} | {"bytes"}),
    "plan_speed": ([], {"plan_seconds", "plan_command_seconds", "trainable", "total"}),
    "profile_step": (TINY, {"floor", "lora", "lora_dropout0", "parallel"}),
    "data_prep": (["--records", "200"], {"later_vs_per_record", "first_vs_per_record", "workers_vs_one_process"}),
}


def test_every_benchmark_module_is_listed_here_and_in_the_readme():
    modules = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - {"__init__", "common"}
    assert modules == set(BENCHMARKS)
    readme = (ROOT / "benchmarks" / "README.md").read_text()
    assert set(re.findall(r"python -m benchmarks\.(\w+)", readme)) == modules


def figures_of(name: str, *arguments: str, timeout: int = 600) -> dict:
    """Run ``python -m benchmarks.<name>`` as the README documents it; its closing JSON line."""
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_the_benchmark_runs_and_reports_its_documented_figures(name, shared_data):
    arguments, keys = BENCHMARKS[name]
    figures = figures_of(name, *arguments)
    assert keys <= figures.keys(), f"missing: {sorted(keys - figures.keys())}"
    assert figures["machine"].keys() >= MACHINE and figures["machine"]["cpu"]
    ratios = [v for k, v in figures.items() if re.search(r"_vs_|_speedup$", k)]
    assert all(isinstance(v, float) and v > 0 for v in ratios)


@pytest.mark.slow
def test_train_throughput_on_smollm2_steps_only(smollm2):
    figures = figures_of("train_throughput", "--model", "smollm2-135m", "--step-only", "--repeats", "1", timeout=1800)
    assert figures["model_parameters"] == 134_515_008
    assert {f"{kind}_vs_floor" for kind in adapter_kinds()} | {"lora_vs_peft"} <= figures.keys()
