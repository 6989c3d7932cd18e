"""`python run.py -m adapter=series,parallel,lora placement=mlp,attn` in a subprocess: six jobs, six directories,
six results.json with the trainable-parameter counts the paper's placements imply for the default model."""

import json
import os
import subprocess

import pytest
import yaml

from llm_adapters.adapters import spec
from tests.helpers.configs import FAST, make_config
from tests.helpers.models import llama_site_dims, paper_count
from tests.helpers.processes import run_py


def test_a_timed_out_job_is_killed_with_its_group(tmp_path):
    proc = run_py(f"hydra.run.dir={tmp_path}", "logger=none", "train.resume=false")  # the default: ~40 s
    with pytest.raises(subprocess.TimeoutExpired):
        proc.communicate(timeout=2)
    assert proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no process of its group is left


def expected_trainable(adapter: str, placement: str) -> int:
    """The closed-form count from the default model's dimensions (conf/model/tiny-llama.yaml)."""
    cfg = make_config(f"adapter={adapter}", f"placement={placement}")
    m = cfg.model.config
    dims = llama_site_dims(m.hidden_size, m.intermediate_size, m.num_attention_heads, m.num_key_value_heads)
    size = cfg.adapter.r if adapter == "lora" else cfg.adapter.bottleneck_size
    return paper_count(adapter, list(spec(adapter).presets[placement]), size, dims, m.num_hidden_layers)


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_six_job_sweep(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_py(
        "-m",
        "adapter=series,parallel,lora",
        "placement=mlp,attn",
        f"hydra.sweep.dir={sweep_dir}",
        *FAST,
        "logger=wandb",
    )
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    results, wandb_ids = {}, set()
    for path in sorted(sweep_dir.glob("*/results.json")):
        (wandb_run,) = path.parent.glob("wandb/offline-run-*")  # one W&B run per job, grouped by the sweep
        wandb_ids.add(wandb_run.name.rsplit("-", 1)[-1])
        assert f"{sweep_dir.parent.name}/{sweep_dir.name}".encode() in next(wandb_run.glob("*.wandb")).read_bytes()
        data = json.loads(path.read_text())
        assert data["status"] == "ok"
        name = path.parent.name  # readable: the job number and its overrides
        assert f"adapter={data['adapter']}," in name and f"placement={data['placement']}," in name
        results[(data["adapter"], data["placement"])] = data["params"]["trainable"]
    assert len(results) == 6 and len(wandb_ids) == 6
    for (adapter, placement), trainable in results.items():
        assert trainable == expected_trainable(adapter, placement), (adapter, placement)
    assert len(set(results.values())) == 6


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_two_sweeps_started_together_do_not_collide(tmp_path):
    procs = [run_py("-m", "seed=1", *FAST, cwd=tmp_path) for _ in range(2)]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
    sweeps = sorted(tmp_path.glob("multirun/*/*"))
    assert len(sweeps) == 2
    assert all(len(list(s.glob("*/results.json"))) == 1 for s in sweeps)


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_embedded_default_learns(tmp_path):
    """`python run.py` with no overrides, as the README's first command runs it (W&B offline included)."""
    proc = run_py(cwd=tmp_path)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    (results_file,) = tmp_path.glob("outputs/*/*/results.json")
    results = json.loads(results_file.read_text())
    assert results["status"] == "ok" and results["adapter"] == "lora" and results["model"] == "tiny-llama"
    history = results["train"]["loss_history"]
    assert history[-1][1] < 0.7 * history[0][1], history
    assert results["eval"]["synthetic_math"]["n"] == 100
    assert (results_file.parent / "predictions.jsonl").read_text().count("\n") == 100
    assert list(results_file.parent.glob("wandb/offline-run-*"))
    assert "trainable params" in out and "accuracy" in out


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    """The launcher the SLURM preset builds on, for real: jobs in their own processes, summary at the end."""
    proc = run_py("-m", "hydra/launcher=submitit_local", "seed=1,2", f"hydra.sweep.dir={tmp_path}", *FAST)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert f"sweep {tmp_path}: 2 jobs, 2 ok, 0 failed, 0 skipped" in out
    seeds = sorted(json.loads(p.read_text())["seed"] for p in tmp_path.glob("*/results.json"))
    assert seeds == [1, 2]
    assert list(tmp_path.glob(".submitit/*"))  # submitit's own job folders


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
@pytest.mark.parametrize(
    ("study", "jobs"),
    [("placement", 9), ("configuration", 16), ("math_table", 4), ("commonsense_table", 4), ("family", 10)],
)
def test_every_study_sweep_composes_its_jobs(tmp_path, study, jobs):
    """Each study file in plan mode (no weights, seconds): the jobs it makes and the settings it gives them."""
    proc = run_py("-m", f"+sweep={study}", "mode=plan", "model=llama-7b", f"hydra.sweep.dir={tmp_path}")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    plans = [json.loads(p.read_text()) for p in tmp_path.glob("*/plan.json")]
    skipped = [json.loads(p.read_text()) for p in tmp_path.glob("*/results.json")]
    assert len(plans) + len(skipped) == jobs
    for plan in plans:
        config = plan["config"]
        tables = ("math_table", "commonsense_table", "family")
        own_schedule = plan["adapter"] in ("prefix", "prompt") and study in tables
        assert config["train"]["batch_size"] == (8 if own_schedule else 16)
        if study == "family":
            assert config["train"]["lr"] == {"prefix": 3e-2, "prompt": 3e-2, "ia3": 3e-3}.get(plan["adapter"], 3e-4)
        if study == "configuration":
            assert config["placement"]["name"] == "best"
    if study == "configuration":
        sizes = sorted(
            (
                p["adapter"],
                p["config"]["adapter"][
                    {"lora": "r", "prefix": "num_virtual_tokens"}.get(p["adapter"], "bottleneck_size")
                ],
            )
            for p in plans
        )
        assert sizes == sorted(
            [(a, s) for a in ("series", "parallel") for s in (64, 128, 256, 512)]
            + [("lora", r) for r in (4, 8, 16, 32)]
            + [("prefix", v) for v in (10, 20, 30, 40)]
        )


def test_the_saved_config_is_what_ran(tmp_path, monkeypatch):
    """A study's per-adapter patch is applied where Hydra saves the config: .hydra/config.yaml, results.json and
    the config handed to W&B agree on the value that ran."""
    proc = run_py("+per_adapter={lora:{train:{lr:0.03}}}", f"hydra.run.dir={tmp_path / 'cli'}", *FAST)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    saved = yaml.safe_load((tmp_path / "cli" / ".hydra" / "config.yaml").read_text())
    results = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert saved["train"]["lr"] == results["config"]["train"]["lr"] == 0.03

    from llm_adapters.job import recipe, tracking

    handed = {}
    start = tracking.start_wandb
    monkeypatch.setattr(
        tracking, "start_wandb", lambda cfg, config, *a: handed.update(config) or start(cfg, config, *a)
    )
    results = recipe.run(make_config("+per_adapter={lora:{train:{lr:0.03}}}", *FAST), tmp_path / "in-process")
    assert handed["train"]["lr"] == results["config"]["train"]["lr"] == 0.03
    assert handed["axes"] == results["axes"]
