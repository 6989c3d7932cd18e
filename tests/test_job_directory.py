"""A job directory holds one experiment's work: a job of another configuration never overwrites it or resumes from
its checkpoints, a live job's directory is not shared, a job killed while evaluating leaves a record its rerun
reuses, and starting over (``train.resume=false``) over old checkpoints works."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from llm_adapters import locks
from llm_adapters.job import phases, resume
from llm_adapters.job.config import ConfigError
from llm_adapters.job.recipe import run
from tests.helpers.configs import FAST, build_model, make_config
from tests.helpers.kills import Killed, kill_at

SAVING = [*FAST, "train.save_every=2"]  # 6 steps, checkpoints at 2, 4, 6


def killed_while(monkeypatch, phase: str, job_dir, *overrides: str) -> dict:
    """Run a job whose ``phase`` is interrupted, leaving ``job_dir`` as a kill -9 then would; returns its record."""
    kill_at(monkeypatch, phases, phase, job_dir, make_config(*overrides))
    return json.loads((job_dir / "results.json").read_text())


def stop_after_checkpoints(monkeypatch, job_dir, *overrides: str) -> None:
    """A job killed after its last checkpoint, before the adapter was saved (its checkpoints are left)."""
    from llm_adapters.adapters import saving

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(saving, "save", killed)
    with pytest.raises(Killed):
        run(make_config(*overrides), job_dir)
    monkeypatch.undo()
    assert (job_dir / "checkpoints" / "step-6").is_dir()


def test_another_configuration_never_resumes_or_overwrites_a_directorys_work(tmp_path, monkeypatch):
    job_dir = tmp_path / "D"
    stop_after_checkpoints(monkeypatch, job_dir, *SAVING)
    before = (job_dir / "results.json").read_text()
    with pytest.raises(ConfigError, match=r"holds the work of another configuration .* choose another hydra.run.dir"):
        run(make_config(*SAVING, "train.lr=1e-3"), job_dir)
    assert (job_dir / "results.json").read_text() == before  # nothing written over it
    with pytest.raises(ConfigError, match="holds the work of another configuration"):  # nor on a second try
        run(make_config(*SAVING, "train.lr=1e-3"), job_dir)
    again = run(make_config(*[o for o in SAVING if o != "train.resume=false"]), job_dir)  # its own config continues
    assert again["status"] == "ok" and again["train"]["resumed_from"].endswith("step-6")
    finished = (job_dir / "results.json").read_text()
    with pytest.raises(ConfigError, match="holds the work of another configuration"):  # a finished job is kept too
        run(make_config(*SAVING, "seed=7"), job_dir)
    assert (job_dir / "results.json").read_text() == finished


def test_starting_over_in_a_directory_with_old_checkpoints(tmp_path, monkeypatch):
    job_dir = tmp_path / "D"
    stop_after_checkpoints(monkeypatch, job_dir, *SAVING)
    fresh = run(make_config(*SAVING), job_dir)  # train.resume=false: from step 1, over the old step-2..6
    assert fresh["status"] == "ok" and fresh["train"]["resumed_from"] is None and fresh["train"]["steps"] == 6


def test_a_live_jobs_directory_is_not_shared(tmp_path):
    job_dir = tmp_path / "D"
    job_dir.mkdir()
    (job_dir / locks.LOCK).write_text(f"{os.uname().nodename} {os.getpid()}\n")  # this process: alive
    with pytest.raises(ConfigError, match=r"a job is running in .*D now .* remove .*\.running if no job runs there"):
        run(make_config(*FAST), job_dir)
    assert not (job_dir / "results.json").exists()


def test_a_job_killed_while_evaluating_is_evaluated_not_trained_again(tmp_path, monkeypatch):
    job_dir = tmp_path / "D"
    overrides = [o for o in FAST if o != "train.resume=false"] + [f"paths.resume_search=[{tmp_path / 'none'}]"]
    left = killed_while(monkeypatch, "evaluate", job_dir, *overrides)
    assert left["status"] == "running" and left["train"]["steps"] == 6  # the training record was on disk
    monkeypatch.setattr(phases, "train", lambda *a, **k: pytest.fail("trained again"))
    again = run(make_config(*overrides), job_dir)
    assert again["status"] == "ok" and again["train"]["reused_adapter"] == str(job_dir)
    assert again["train"]["loss_history"] == left["train"]["loss_history"]


def test_resume_search_given_as_one_path(tmp_path):
    base = [o for o in FAST if o != "train.resume=false"]
    assert run(make_config(*base, f"paths.resume_search=[{tmp_path}]"), tmp_path / "a")["status"] == "ok"
    again = run(make_config(*base, f"paths.resume_search={tmp_path}"), tmp_path / "b")  # a string: one root
    assert again["status"] == "skipped" and again["reused_from"] == str(tmp_path / "a")
    assert resume.roots_of("/tmp/x") == ["/tmp/x"] and resume.roots_of(["a", "b"]) == ["a", "b"]


def test_a_rerun_of_a_skip_names_no_machine_path_and_leaves_its_record_alone(tmp_path, monkeypatch):
    """Below the working directory a skip names the earlier job by a relative path (a committed study names no
    machine's folders), and a second rerun leaves the skipped record's bytes as they were (no churn in git)."""
    monkeypatch.chdir(tmp_path)
    base = [o for o in FAST if o != "train.resume=false"] + ["paths.resume_search=[jobs]"]
    assert run(make_config(*base), tmp_path / "jobs" / "a")["status"] == "ok"
    skipped = run(make_config(*base), tmp_path / "jobs" / "b")
    assert skipped["status"] == "skipped" and skipped["reused_from"] == os.path.join("jobs", "a")
    record = tmp_path / "jobs" / "b" / "results.json"
    written, stamp = record.read_bytes(), record.stat().st_mtime_ns
    monkeypatch.setattr("llm_adapters.job.tracking.git_commit", lambda: "another-commit")  # what a later rerun records
    assert run(make_config(*base), tmp_path / "jobs" / "b")["status"] == "skipped"
    assert record.read_bytes() == written and record.stat().st_mtime_ns == stamp


def test_a_resumed_runs_time_covers_every_step(tmp_path):
    """``train.seconds`` of a resumed run counts the steps done before the checkpoint too, so tokens per second
    divides all the tokens by all the time."""
    from llm_adapters.data.synthetic_math import generate
    from llm_adapters.data.training_examples import tokenize_for_training
    from llm_adapters.training import train

    cfg = make_config(*SAVING)
    model, tokenizer, *_ = build_model(cfg)
    examples = tokenize_for_training(generate(64, 0, seed=0)[0], tokenizer, 64, True)
    cpu = torch.device("cpu")
    whole = train(model, examples, cfg.train, tokenizer.pad_token_id, 0, cpu, checkpoint_dir=tmp_path / "c")
    shutil.copytree(tmp_path / "c" / "step-4", tmp_path / "step-4")
    before = torch.load(tmp_path / "step-4" / "state.pt", weights_only=True)["progress"]["seconds"]
    model, *_ = build_model(cfg)
    resumed = train(model, examples, cfg.train, tokenizer.pad_token_id, 0, cpu, resume_from=tmp_path / "step-4")
    assert 0 < before < resumed.seconds and resumed.tokens == whole.tokens
