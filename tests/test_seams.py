"""Where two features meet, the job gives one answer: every path through a job (uninterrupted; killed mid-training and
resumed; killed while evaluating and re-evaluated; killed between saving its adapter and recording it; its record
lost; its adapter reused by a job in another directory; a search trial; a ``submitit_local`` job) writes the
uninterrupted job's predictions and the same record but for timing and provenance, under both evaluation methods and
both protocols. Under ``protocol=paper`` adapter dropout stays on while generating, so this holds only because
evaluation starts from the random state saved with the adapter.

The kills here are raised inside the phase named and the job directory is then left as a ``kill -9`` at that moment
leaves it (the record on disk then, a lock naming a dead process); ``tests/test_reliability_seams.py`` sends real
signals to real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_adapters import files
from llm_adapters.job import phases
from llm_adapters.job.recipe import run
from llm_adapters.training import checkpoint
from tests.helpers.configs import FAST, QUICK, make_config
from tests.helpers.kills import kill_at, never_trained_again

RESUMING = [o for o in QUICK if o != "train.resume=false"] + ["train.save_every=2"]  # 6 steps, checkpoints 2, 4, 6
GENERATE = [*FAST[len(QUICK) :], "adapter.dropout=0.3", "eval.num_beams=2"]  # a draw of dropout shows
LOGLIK = ["dataset=arc_e", "train.max_examples=16", "eval=commonsense", "eval.datasets=[arc_e]"]
LOGLIK += ["eval.method=loglik", "eval.max_samples=6"]
# What differs between two runs of one experiment without being a result: when, how fast, where from.
NOT_A_RESULT = {
    "seconds",
    "tokens_per_second",
    "peak_memory_mb",
    "resumed_from",
    "reused_adapter",
    "versions",
    "git_commit",
}


def comparable(record: dict) -> dict:
    """A results.json less its timing and provenance, and less the resume roots (each path has its own)."""
    out = {k: comparable(v) if isinstance(v, dict) else v for k, v in record.items() if k not in NOT_A_RESULT}
    if isinstance(out.get("config"), dict):
        out["config"] = {k: v for k, v in out["config"].items() if k != "paths"}
    return out


def uninterrupted(monkeypatch, job_dir: Path, overrides: list[str]) -> Path:
    assert run(make_config(*overrides), job_dir)["status"] == "ok"
    return job_dir


def killed_mid_training(monkeypatch, job_dir: Path, overrides: list[str]) -> Path:
    cfg = make_config(*overrides)
    kill_at(monkeypatch, checkpoint, "save", job_dir, cfg, when=lambda _, step, *a, **k: step == 4, first=True)
    assert checkpoint.latest_checkpoint(job_dir / "checkpoints").name == "step-4"
    assert run(cfg, job_dir)["train"]["resumed_from"].endswith("step-4")
    return job_dir


def killed_while_evaluating(monkeypatch, job_dir: Path, overrides: list[str]) -> Path:
    cfg = make_config(*overrides)
    kill_at(monkeypatch, phases, "evaluate", job_dir, cfg)
    assert never_trained_again(monkeypatch, cfg, job_dir)["train"]["reused_adapter"] == files.shown(job_dir)
    return job_dir


def killed_after_saving_the_adapter(monkeypatch, job_dir: Path, overrides: list[str]) -> Path:
    """Killed the instant the adapter was in place, before the record naming it was written (item 7): the
    checkpoints are still there, the record says ``running`` with no training, and the adapter says whose it is."""
    from llm_adapters.job import recipe

    cfg = make_config(*overrides)
    naming = lambda path, data: Path(path).name == "results.json" and "train" in data  # noqa: E731
    kill_at(monkeypatch, recipe.files, "write_json", job_dir, cfg, when=naming)
    assert (job_dir / "adapter" / "adapter_config.json").is_file() and (job_dir / "checkpoints").is_dir()
    assert "train" not in json.loads((job_dir / "results.json").read_text())
    never_trained_again(monkeypatch, cfg, job_dir)
    assert not (job_dir / "checkpoints").exists()  # deleted once the record names the adapter
    return job_dir


def record_lost(monkeypatch, job_dir: Path, overrides: list[str]) -> Path:
    """A finished job whose results.json was deleted (item 8): the adapter says whose it is, and it is evaluated."""
    cfg = make_config(*overrides)
    run(cfg, job_dir)
    (job_dir / "results.json").unlink()
    (job_dir / "predictions.jsonl").unlink()
    assert never_trained_again(monkeypatch, cfg, job_dir)["status"] == "ok"
    return job_dir


def reused_from_another_directory(monkeypatch, job_dir: Path, overrides: list[str]) -> Path:
    """Killed while evaluating in one directory; the same experiment started in another evaluates that adapter."""
    first = job_dir.with_name(f"{job_dir.name}-first")
    kill_at(monkeypatch, phases, "evaluate", first, make_config(*overrides))
    again = never_trained_again(monkeypatch, make_config(*overrides), job_dir)
    assert again["train"]["reused_adapter"] == files.shown(first)
    return job_dir


PATHS = [
    killed_mid_training,
    killed_while_evaluating,
    killed_after_saving_the_adapter,
    record_lost,
    reused_from_another_directory,
]


def assert_same_job(job: Path, reference: Path) -> None:
    assert (job / "predictions.jsonl").read_bytes() == (reference / "predictions.jsonl").read_bytes()
    mine, theirs = (json.loads((d / "results.json").read_text()) for d in (job, reference))
    assert mine["status"] == theirs["status"] == "ok"
    assert comparable(mine) == comparable(theirs)


def through_every_path(monkeypatch, root: Path, overrides: list[str]) -> None:
    reference = uninterrupted(
        monkeypatch, root / "uninterrupted" / "job", [*overrides, f"paths.resume_search=[{root / 'uninterrupted'}]"]
    )
    for path in PATHS:
        home = root / path.__name__
        job = path(monkeypatch, home / "job", [*overrides, f"paths.resume_search=[{home}]"])
        assert_same_job(job, reference)


def test_every_path_through_a_generation_job_gives_the_uninterrupted_predictions(tmp_path, monkeypatch):
    """``protocol=paper``: adapter dropout on while generating, the case where the random state decides."""
    through_every_path(monkeypatch, tmp_path, [*RESUMING, *GENERATE, "protocol=paper"])


@pytest.mark.slow  # the other three method × protocol cells: about a minute
@pytest.mark.parametrize(
    "method,protocol", [("generate", "fixed"), ("loglik", "paper"), ("loglik", "fixed")], ids=lambda v: str(v)
)
def test_every_path_under_each_method_and_protocol(tmp_path, monkeypatch, shared_data, method, protocol):
    chosen = GENERATE if method == "generate" else [f"paths.data_dir={shared_data}", *LOGLIK]
    through_every_path(monkeypatch, tmp_path, [*RESUMING, *chosen, f"protocol={protocol}"])
