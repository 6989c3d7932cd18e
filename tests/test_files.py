"""A stray results.json (empty, truncated, not an object) never stops a resume scan, a sweep summary or an analysis:
it is skipped with a warning, and a sweep counts its job as failed."""

import json
import logging
from pathlib import Path

import pytest

from analysis.collect import load
from llm_adapters.files import read_results, sha256, write_json
from llm_adapters.job.resume import earlier_work
from llm_adapters.job.sweep import summarise

STRAYS = {"empty": "", "list": "[]", "truncated": '{"status": "ok", "config_ha', "number": "3"}


@pytest.fixture
def root(tmp_path):
    for name, text in STRAYS.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(text)
    (tmp_path / "good").mkdir()
    write_json(tmp_path / "good" / "results.json", {"status": "ok", "config_hash": "abc", "model": "m"})
    return tmp_path


def test_read_results_warns_and_returns_none_for_strays(root, caplog):
    with caplog.at_level(logging.WARNING):
        assert [read_results(root / name / "results.json") for name in STRAYS] == [None] * len(STRAYS)
    assert sum("ignoring" in message for message in caplog.messages) == len(STRAYS)
    assert read_results(root / "good" / "results.json")["config_hash"] == "abc"


def test_resume_scan_analysis_and_summary_survive_strays(root, tmp_path_factory):
    earlier = earlier_work("abc", [str(root)], tmp_path_factory.mktemp("job"))
    assert earlier.done == root / "good" and earlier.checkpoint is None and earlier.trained is None
    assert list(load([root])["job"]) == [str(root / "good")]
    counts, notes = summarise(root)
    assert counts == {"ok": 1, "failed": len(STRAYS)}
    assert all("no final record" in note for note in notes)
    assert json.loads((root / "good" / "results.json").read_text())["status"] == "ok"


def test_a_re_evaluation_is_its_own_row_not_averaged_with_its_training_run(tmp_path):
    from analysis.tables import table

    base = {"status": "ok", "model": "tiny-llama", "adapter": "lora", "placement": "best", "dataset": "synthetic_math"}
    trained = {**base, "mode": "train", "seed": 42, "config": {"adapter": {"r": 32}, "adapter_path": None}}
    again = {
        **base,
        "mode": "eval",
        "seed": 42,
        "config": {"adapter": {"r": 32}, "adapter_path": "outputs/x/adapter"},  # the command line's adapter group
        "loaded_adapter": {"kind": "lora", "r": 8},  # what it really loaded
    }
    for name, results, accuracy in (("a", trained, 4.0), ("b", again, 6.0)):
        (tmp_path / name).mkdir()
        write_json(
            tmp_path / name / "results.json", {**results, "eval": {"synthetic_math": {"accuracy": accuracy, "n": 100}}}
        )
    numbers = table(load([tmp_path]), "math")
    assert sorted(zip(numbers["mode"], numbers["synthetic_math"], numbers["size"], strict=True)) == [
        ("eval", 6.0, 8),
        ("train", 4.0, 32),
    ]


def test_analysis_finds_a_reused_job_by_name_when_its_recorded_path_is_another_machines(tmp_path):
    """A study cloned from another machine: the recorded path does not exist here, the job beside it does."""
    sweep = tmp_path / "sweep"
    (sweep / "0_a").mkdir(parents=True)
    write_json(
        sweep / "0_a" / "results.json",
        {"status": "ok", "model": "m", "adapter": "lora", "seed": 1, "eval": {"gsm8k": {"accuracy": 40.0, "n": 10}}},
    )
    (sweep / "1_b").mkdir()
    write_json(sweep / "1_b" / "results.json", {"status": "skipped", "reused_from": "/elsewhere/sweep/0_a"})
    frame = load([sweep])
    assert len(frame) == 1 and frame["acc/gsm8k"].tolist() == [40.0]


def test_analysis_follows_reused_jobs_and_counts_each_once(tmp_path):
    first, rerun = tmp_path / "first" / "0_seed=1", tmp_path / "rerun"
    result = {"status": "ok", "model": "m", "adapter": "lora", "placement": "best", "seed": 1}
    first.mkdir(parents=True)
    write_json(first / "results.json", {**result, "eval": {"gsm8k": {"accuracy": 40.0, "n": 10}}})
    for job in ("0_seed=1", "1_seed=1_again"):  # two later jobs both reused the first one
        (rerun / job).mkdir(parents=True)
        write_json(rerun / job / "results.json", {"status": "skipped", "reused_from": str(first), "reason": "done"})
    (rerun / "2_seed=2").mkdir()
    write_json(
        rerun / "2_seed=2" / "results.json", {**result, "seed": 2, "eval": {"gsm8k": {"accuracy": 50.0, "n": 10}}}
    )
    df = load([rerun])
    assert sorted(zip(df["status"], df["seed"], df["acc/gsm8k"], strict=True)) == [("ok", 1, 40.0), ("ok", 2, 50.0)]
    assert len(load([tmp_path])) == 2  # the original and its reuses: one row


def test_a_sweep_counts_jobs_that_died_before_writing_their_record(tmp_path):
    (tmp_path / "0_seed=1" / ".hydra").mkdir(parents=True)  # launched, died before results.json
    (tmp_path / "1_seed=2" / ".hydra").mkdir(parents=True)
    write_json(tmp_path / "1_seed=2" / "results.json", {"status": "running"})  # killed mid-run
    counts, notes = summarise(tmp_path)
    assert counts == {"failed": 2}
    assert notes == ["  failed: 0_seed=1: no results.json", "  failed: 1_seed=2: still marked running (killed?)"]


def test_the_config_hash_holds_the_data_not_its_place(shared_data, tmp_path):
    """The same files in another directory are the same experiment (skipped, reused); a changed training file is
    not (it runs again), and results.json records each file's size and SHA-256."""
    from llm_adapters.job.recipe import run
    from tests.helpers.configs import QUICK, make_config

    def data_dir(name: str, answer: str) -> Path:
        root = tmp_path / name
        for relative, n in (("ft-training_set/math_data.json", 8), ("dataset/gsm8k/test.json", 2)):
            records = json.loads((shared_data / relative).read_text())[:n]
            if relative.startswith("ft"):
                records[0] = {**records[0], "answer": answer}
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / relative).write_text(json.dumps(records))
        return root

    def job(name: str, data: Path) -> dict:
        overrides = [o for o in QUICK if o != "train.resume=false"]
        cfg = make_config(
            *overrides,
            "dataset=math_data",
            "eval.datasets=[gsm8k]",
            f"paths.data_dir={data}",
            f"paths.resume_search=[{tmp_path / 'jobs'}]",
            "train.batch_size=4",
            "train.micro_batch_size=4",
        )
        return run(cfg, tmp_path / "jobs" / name)

    first = job("first", data_dir("a", "1"))
    assert first["status"] == "ok" and set(first["data"]) == {"train", "gsm8k"}
    assert first["data"]["train"]["sha256"] == sha256(tmp_path / "a" / "ft-training_set" / "math_data.json")
    moved = job("moved", data_dir("b", "1"))
    assert moved["status"] == "skipped" and moved["reused_from"] == str(tmp_path / "jobs" / "first")
    changed = job("changed", data_dir("c", "2"))
    assert changed["status"] == "ok" and changed["config_hash"] != first["config_hash"]


def test_a_superseded_job_stands_for_the_job_that_finished_it(tmp_path):
    """A killed job continued to the end elsewhere is marked superseded; analysing its sweep finds the result."""
    (tmp_path / "sweep" / "0").mkdir(parents=True)
    (tmp_path / "later").mkdir()
    base = {"model": "m", "adapter": "lora", "placement": "best", "dataset": "d", "seed": 1, "config": {}}
    write_json(tmp_path / "later" / "results.json", {**base, "status": "ok", "eval": {"s": {"accuracy": 7.0, "n": 9}}})
    write_json(
        tmp_path / "sweep" / "0" / "results.json",
        {**base, "status": "superseded", "superseded_by": str(tmp_path / "later")},
    )
    frame = load([tmp_path / "sweep"])
    assert list(frame["job"]) == [str(tmp_path / "later")] and list(frame["acc/s"]) == [7.0]
    counts, notes = summarise(tmp_path / "sweep")
    assert counts == {"superseded": 1} and notes[0].startswith("  superseded: 0:")


def test_a_finished_adapter_is_evaluated_not_trained_again(tmp_path, monkeypatch):
    """A job killed while evaluating left its adapter complete: the rerun evaluates that adapter with the earlier
    training record, trains nothing, keeps a copy of the adapter, and marks the earlier job superseded."""
    from llm_adapters.job import phases
    from llm_adapters.job.recipe import run
    from tests.helpers.configs import QUICK, make_config

    settings = [o for o in QUICK if o != "train.resume=false"]
    settings += ["dataset.train_size=64", "dataset.test_size=8", "protocol=fixed", f"paths.resume_search=[{tmp_path}]"]
    first = run(make_config(*settings), tmp_path / "first")
    record = json.loads((tmp_path / "first" / "results.json").read_text())
    del record["eval"]
    write_json(tmp_path / "first" / "results.json", {**record, "status": "failed", "reason": "Preempted: SIGTERM"})
    monkeypatch.setattr(phases, "train", lambda *a, **k: pytest.fail("trained again"))
    again = run(make_config(*settings), tmp_path / "again")
    assert again["status"] == "ok" and again["train"]["reused_adapter"] == str(tmp_path / "first")
    assert again["train"]["loss_history"] == first["train"]["loss_history"]
    assert again["eval"]["synthetic_math"]["correct"] == first["eval"]["synthetic_math"]["correct"]
    assert (tmp_path / "again" / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "first" / "results.json").read_text())["status"] == "superseded"


def test_a_live_identical_job_is_neither_duplicated_nor_resumed_from(tmp_path):
    """While a job of the same experiment runs (its lock names a live process), a second one says so and stops; once
    that process is gone the lock is stale and the second one goes ahead."""
    import os
    import socket
    import subprocess
    import sys

    from llm_adapters.job.recipe import run
    from tests.helpers.configs import QUICK, make_config

    settings = [o for o in QUICK if o != "train.resume=false"]
    settings += ["dataset.train_size=64", "dataset.test_size=8", f"paths.resume_search=[{tmp_path}]"]
    run(make_config(*settings), tmp_path / "first")
    assert not (tmp_path / "first" / ".running").exists()  # released when the job ended
    record = json.loads((tmp_path / "first" / "results.json").read_text())
    write_json(tmp_path / "first" / "results.json", {**record, "status": "running"})
    (tmp_path / "first" / ".running").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    second = run(make_config(*settings), tmp_path / "second")
    assert second["status"] == "skipped" and second["reason"].endswith(f"running now in {tmp_path / 'first'}")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "first" / ".running").write_text(f"{socket.gethostname()} {gone.stdout.strip()}\n")
    assert run(make_config(*settings), tmp_path / "third")["status"] == "ok"
