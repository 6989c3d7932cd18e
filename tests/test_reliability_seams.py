"""The seams of issue 39 with real processes and real signals: a job killed (SIGKILL) or stopped (SIGTERM) while
evaluating and rerun, a search trial and a ``submitit_local`` job all write the predictions of the uninterrupted job
(``protocol=paper``, adapter dropout on while generating); a search killed mid-trial in a sweep directory outside
``paths.resume_search`` continues the trial's checkpoints and ends cleanly; a second search that draws a finished
trial reports its value; a second sweep into a running sweep's directory is refused in one line."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import optuna
import pytest

from tests.helpers.processes import run_py

pytestmark = pytest.mark.slow  # whole jobs and sweeps in subprocesses: CI's second pass

ARGS = [
    "logger=none",
    "protocol=paper",
    "adapter.dropout=0.3",
    "dataset.train_size=64",
    "dataset.test_size=24",
    "train.max_steps=10",
    "train.save_every=5",
    "train.log_every=5",
    "train.warmup_steps=2",
    "eval.max_new_tokens=48",
    "eval.num_beams=2",
]


def finished(proc, expect: int = 0) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == expect, out[-3000:]
    return out


def wait_for(predicate, proc, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None and time.monotonic() < deadline, f"the job ended before {what}"
        time.sleep(0.02)


def evaluating(job_dir: Path) -> bool:
    """The job's record names its trained adapter: it is evaluating now."""
    try:
        return "loss_history" in json.loads((job_dir / "results.json").read_text()).get("train", {})
    except (OSError, ValueError):
        return False


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    finished(run_py(*ARGS, f"paths.resume_search=[{root}]", f"hydra.run.dir={root / 'job'}"))
    return root / "job"


def job_of(sweep_dir: Path, number: str) -> Path:
    """The job directory of a sweep whose name starts with ``number`` (the rest of it is the overrides)."""
    (job,) = [p for p in sweep_dir.iterdir() if p.name.startswith(number)]
    return job


def same_predictions(job_dir: Path, reference: Path) -> None:
    assert (job_dir / "predictions.jsonl").read_bytes() == (reference / "predictions.jsonl").read_bytes()
    mine, theirs = (json.loads((d / "results.json").read_text()) for d in (job_dir, reference))
    assert mine["status"] == "ok" and mine["config_hash"] == theirs["config_hash"]
    assert {k: v["correct"] for k, v in mine["eval"].items()} == {k: v["correct"] for k, v in theirs["eval"].items()}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_job_stopped_while_evaluating_reruns_to_the_uninterrupted_predictions(tmp_path, reference, sig):
    args = [*ARGS, f"paths.resume_search=[{tmp_path}]", f"hydra.run.dir={tmp_path / 'job'}"]
    proc = run_py(*args)
    wait_for(lambda: evaluating(tmp_path / "job"), proc, "its evaluation")
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    if sig == signal.SIGTERM:  # one line, no traceback, and the record says why
        assert "Traceback" not in out and "stopped: SIGTERM outside training" in out
        assert json.loads((tmp_path / "job" / "results.json").read_text())["reason"].startswith("Preempted: SIGTERM")
    out = finished(run_py(*args))
    assert "instead of training again" in out
    same_predictions(tmp_path / "job", reference)


def test_a_search_trial_and_a_submitit_job_give_the_uninterrupted_predictions(tmp_path, reference):
    search = ["-m", "hydra/sweeper=optuna_search", "hydra.sweeper.n_trials=1", "adapter.dropout=choice(0.3)"]
    elsewhere = f"paths.resume_search=[{tmp_path / 'none'}]"
    finished(run_py(*search, *ARGS[:2], *ARGS[3:], elsewhere, f"hydra.sweep.dir={tmp_path / 's'}"))
    same_predictions(job_of(tmp_path / "s", "0_"), reference)
    submitit = ["-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={tmp_path / 'q'}"]
    finished(run_py(*submitit, *ARGS, elsewhere))
    same_predictions(job_of(tmp_path / "q", "0_"), reference)


def test_a_search_killed_mid_trial_outside_resume_search_continues_its_checkpoints(tmp_path):
    sweep_dir = tmp_path / "methods_search"  # as the README's real search: not under paths.resume_search
    common = [*ARGS, "train.max_steps=30", f"paths.resume_search=[{tmp_path / 'none'}]", f"hydra.sweep.dir={sweep_dir}"]
    space = ["-m", "hydra/sweeper=optuna_search", "adapter.r=choice(4)"]
    proc = run_py(*space, "hydra.sweeper.n_trials=1", *common)
    wait_for(lambda: any(sweep_dir.glob("0_*/checkpoints/step-*")), proc, "its first checkpoint")
    first = job_of(sweep_dir, "0_")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    out = finished(run_py(*space, "hydra.sweeper.n_trials=2", *common))  # the killed trial asked again, then one more
    assert "still marked running" not in out and ", 0 failed," in out and "superseded: 0_" in out
    continued = json.loads((job_of(sweep_dir, "1_") / "results.json").read_text())
    assert continued["train"]["resumed_from"].startswith(str(first / "checkpoints" / "step-"))
    assert json.loads((first / "results.json").read_text())["status"] == "superseded"
    # A second search drawing the same finished settings: its trials report that job's value, not FAIL.
    other = tmp_path / "again"
    again = [*common[:-2], f"paths.resume_search=[{sweep_dir}]", f"hydra.sweep.dir={other}"]
    finished(run_py(*space, "hydra.sweeper.n_trials=1", *again))
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{other / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    assert study.trials[0].values == [continued["eval"]["synthetic_math"]["accuracy"]]


def test_a_second_sweep_into_a_running_sweeps_directory_is_refused(tmp_path):
    args = ["-m", "adapter=lora", *ARGS, "train.max_steps=200", f"hydra.sweep.dir={tmp_path}"]
    first = run_py(*args)
    wait_for(lambda: (tmp_path / ".sweep-running").is_file(), first, "it started")
    second = run_py(*args)
    out = finished(second, expect=2)
    assert out.strip().splitlines()[-1].startswith(f"error: a sweep is running in {tmp_path} now")
    first.kill()
    first.communicate(timeout=60)
