"""Sweeps never lose work: a failing job does not stop the others, completed jobs are not redone, bad input is one
line, a non-finite loss stops at once."""

import json
import os
import subprocess
import sys

import pytest
import torch

from llm_adapters.data.synthetic_math import generate
from llm_adapters.data.training_examples import tokenize_for_training
from llm_adapters.errors import DivergedError
from llm_adapters.job.recipe import run
from llm_adapters.training import train
from tests.helpers.configs import FAST, ROOT, build_model, make_config
from tests.helpers.processes import run_py

ADAPTER_YAMLS = [path.stem for path in (ROOT / "conf" / "adapter").glob("*.yaml")]  # the choices Hydra lists


def statuses(sweep_dir):
    return sorted(json.loads(p.read_text())["status"] for p in sweep_dir.glob("*/results.json"))


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_failing_job_does_not_stop_the_sweep(tmp_path):
    proc = run_py(
        "-m",
        "placement.layers=[0],[99]",
        "adapter=lora,adapterh",
        "placement=attn",
        f"hydra.sweep.dir={tmp_path}",
        *FAST,
    )
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, out[-3000:]
    # lora on layer 0 ran; lora on layer 99 failed; AdapterH has no attention preset: skipped with the reason, twice
    assert statuses(tmp_path) == ["failed", "ok", "skipped", "skipped"]
    assert f"sweep {tmp_path}: 4 jobs, 1 ok, 1 failed, 2 skipped" in out
    assert "placement 'attn' has no meaning for adapter 'adapterh'" in out


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_rerunning_a_sweep_skips_completed_jobs(tmp_path):
    args = ["-m", "seed=1,2", *[o for o in FAST if o != "train.resume=false"], f"paths.resume_search=[{tmp_path}]"]
    first = run_py(*args, f"hydra.sweep.dir={tmp_path / 'first'}")
    assert first.wait(timeout=600) == 0
    again = run_py(*args, f"hydra.sweep.dir={tmp_path / 'again'}")
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-3000:]
    assert "2 jobs, 0 ok, 0 failed, 2 skipped" in out
    reused = [json.loads(p.read_text())["reused_from"] for p in sorted((tmp_path / "again").glob("*/results.json"))]
    assert [str(tmp_path / "first") in r for r in reused] == [True, True]
    forced = run_py(*args, "train.resume=false", f"hydra.sweep.dir={tmp_path / 'forced'}")
    out, _ = forced.communicate(timeout=600)
    assert "2 jobs, 2 ok, 0 failed, 0 skipped" in out


def test_resume_matches_on_the_whole_config(tmp_path):
    base = [*[o for o in FAST if o != "train.resume=false"], f"paths.resume_search=[{tmp_path}]"]
    first = run(make_config(*base), tmp_path / "a")
    assert first["status"] == "ok"
    assert run(make_config(*base), tmp_path / "b")["status"] == "skipped"
    assert run(make_config(*base, "logger=wandb"), tmp_path / "c")["status"] == "skipped"  # logging is not the job
    assert run(make_config(*base, "seed=3"), tmp_path / "d")["status"] == "ok"  # another seed is another job


@pytest.mark.parametrize(
    ("override", "line"),
    [
        # In the quick suite, the checks made before Hydra composes; the rest are checked in process by test_config
        # and test_placement, and here, as a whole command, in the slow pass.
        pytest.param("train.lr=0", "error: train.lr must be a positive number (got 0)", marks=pytest.mark.slow),
        pytest.param(
            "train.micro_batch_size=5",
            "error: train.micro_batch_size 5 does not divide train.batch_size 16",
            marks=pytest.mark.slow,
        ),
        (
            "placement.sites=[attn.z]",
            "error: unknown site(s) ['attn.z'] in placement 'best' (known: attn.q, attn.k, attn.v, attn.o, mlp.gate, "
            "mlp.up, mlp.down, attn, mlp, attn.input, attn.output, mlp.input, mlp.output, attn.norm, mlp.norm)",
        ),
        (
            "adapter=lora2",
            f"error: adapter=lora2: no such adapter (available: {', '.join(sorted(ADAPTER_YAMLS))})",
        ),
        ("placement=mpl", "error: placement=mpl: no such placement (available: attn, best, both, mlp)"),
        pytest.param(  # the same check as adapter= and placement= above, on other groups: the slow suite's
            "model=llama-70b",
            "error: model=llama-70b: no such model (available: bloomz-7b1, gemma3-270m, gpt-j-6b, gpt2-xl, llama-13b, "
            "llama-7b, opt-6.7b, pythia-6.9b, smollm2-135m, tiny-llama)",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "eval=maths",
            "error: eval=maths: no such eval (available: commonsense, math, math_mawps, synthetic)",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "placement.layers=[7]",
            "error: placement.layers [7] out of range: the model has 4 layers",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "eval.datasets=[gsm9k]",
            "error: eval.datasets: unknown evaluation set(s) ['gsm9k'] (known: synthetic_math, "
            "gsm8k, svamp, addsub, multiarith, singleeq, mawps, aqua, mathqa, boolq, piqa, siqa, hellaswag, "
            "winogrande, arc_e, arc_c, obqa)",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            "dataset=math_9k",
            "error: dataset=math_9k: no such dataset (available: arc_c, arc_e, boolq, commonsense_15k, "
            "commonsense_170k, commonsense_mix, hellaswag, hub, math_10k, math_14k, math_50k, math_7k, math_data, "
            "obqa, piqa, siqa, synthetic_math, winogrande)",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, override, line):
    proc = run_py(override, "logger=none", cwd=tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert out.strip() == line
    logs = list(tmp_path.glob("outputs/*/*/run.log"))  # errors found before Hydra starts leave no job directory
    assert all(line in path.read_text() for path in logs)
    assert logs or override.split("=")[0] in ("adapter", "placement", "model", "eval", "dataset")


def test_non_finite_loss_stops_at_the_step():
    cfg = make_config()
    model, tokenizer, *_ = build_model(cfg)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))
    examples = tokenize_for_training(generate(32, 0, seed=0)[0], tokenizer, 256, True)
    with pytest.raises(DivergedError, match=r"non-finite training loss nan at step 1 \(train.lr 0.003\): a smaller"):
        train(model, examples, cfg.train, tokenizer.pad_token_id, seed=0, device=torch.device("cpu"))


FAKE_KEY = "local-0123456789abcdef0123456789abcdef01234567"
FAKE_TOKEN = "hf_FakeTokenThatMustNeverBeWrittenAnywhere"


def files_mentioning(root, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_unreachable_wandb_does_not_stop_the_job(tmp_path):
    env = {"WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": FAKE_KEY, "HF_TOKEN": FAKE_TOKEN}
    proc = run_py(
        *FAST,
        "logger=wandb",
        "logger.mode=online",
        "logger.init_timeout=5",
        f"hydra.run.dir={tmp_path / 'job'}",
        env=env,
    )
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert out.count("W&B could not start") == 1
    assert json.loads((tmp_path / "job" / "results.json").read_text())["status"] == "ok"
    assert files_mentioning(tmp_path, FAKE_KEY) == [] and files_mentioning(tmp_path, FAKE_TOKEN) == []


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_secrets_never_reach_results_logs_or_config_dumps(tmp_path):
    env = {"WANDB_API_KEY": FAKE_KEY, "HF_TOKEN": FAKE_TOKEN}
    proc = run_py(*FAST, "logger=wandb", f"hydra.run.dir={tmp_path / 'job'}", env=env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert (tmp_path / "job" / ".hydra" / "config.yaml").is_file() and list(tmp_path.rglob("offline-run-*"))
    assert files_mentioning(tmp_path, FAKE_KEY) == [] and files_mentioning(tmp_path, FAKE_TOKEN) == []
    assert FAKE_KEY not in out and FAKE_TOKEN not in out


def test_problems_that_would_show_after_training_are_found_before_it(tmp_path, monkeypatch):
    """Every label masked by a short cutoff, or an evaluation prompt too long for the model's context: one line
    naming the key or the record, before the first training step."""
    from llm_adapters.job import phases
    from llm_adapters.job.config import ConfigError
    from llm_adapters.job.recipe import run
    from tests.helpers.configs import make_config

    monkeypatch.setattr(phases, "train", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ConfigError, match=r"train\.cutoff_len 16 cuts every training example before its response"):
        run(make_config(*FAST, "protocol=fixed", "train.cutoff_len=16"), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"synthetic_math record 0: its prompt \(\d+ tokens\) and 600 more"):
        run(make_config(*FAST, "eval.max_new_tokens=600"), tmp_path / "b")
    with pytest.raises(ConfigError, match=r"train\.cutoff_len 1 cuts every training example to one token"):
        run(make_config(*FAST, "protocol=paper", "train.cutoff_len=1"), tmp_path / "c")
    monkeypatch.setattr(phases, "build_base", lambda *a, **k: pytest.fail("the model was built"))
    with pytest.raises(ConfigError, match=r"val_set_size 64 leaves nothing to train on \(64 records in the synth"):
        run(make_config(*FAST, "train.val_set_size=64"), tmp_path / "d")


@pytest.mark.slow  # a whole subprocess job: CI's second pass, not the quick suite
def test_a_full_disk_is_one_line_and_the_failure_is_recorded(tmp_path):
    """The disk fills while the adapter is saved: one line naming the path, exit 1, and results.json says failed."""
    script = (
        "import errno, runpy, sys\n"
        "from llm_adapters.adapters import saving\n"
        "def full(model, adapter_cfg, model_name, targets, directory, *rest, **named):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device', str(directory))\n"
        "saving.save = full\n"
        f"sys.argv = ['run.py', *{[*FAST, f'hydra.run.dir={tmp_path}']!r}]\n"
        "runpy.run_path('run.py', run_name='__main__')\n"
    )
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: no space left on the device of {tmp_path / 'adapter'}; earlier checkpoints are kept"
    )
    assert "Traceback" not in proc.stderr
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["reason"]
