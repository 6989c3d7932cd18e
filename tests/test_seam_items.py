"""Each seam an adversarial round found open (issue 39), held shut by its own test: a search's settings reach the
analysis; one experiment is one sample; a reused trial reports its job's values; a sweep owns its directory and
searches it; a job knows its own adapter; bad search spaces, objectives, storages, budgets and analysis inputs are
one line, exit 2, before any work."""

from __future__ import annotations

import json
import logging
import os
import socket

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from llm_adapters import search
from llm_adapters.files import write_json
from llm_adapters.job import resume
from llm_adapters.job.config import ConfigError
from llm_adapters.job.recipe import run
from llm_adapters.search.space import Space
from tests.helpers.configs import FAST, make_config

RESUMING = [o for o in FAST if o != "train.resume=false"]


def job(root, name, r, lr, correct, digest=None, seed=42, status="ok"):
    """A job directory by hand: LoRA at rank ``r`` and learning rate ``lr``, one set of questions answered as
    ``correct`` says."""
    directory = root / name
    directory.mkdir(parents=True)
    n = len(correct)
    config = {"seed": seed, "adapter": {"kind": "lora", "r": r}, "train": {"lr": lr}, "eval": {"method": "generate"}}
    write_json(
        directory / "results.json",
        {
            "status": status,
            "config_hash": digest,
            "axes": {"model": "m", "adapter": "lora", "placement": "best", "size": r, "dataset": "d"}
            | {"seed": seed, "method": "generate"},
            "config": config,
            "params": {"trainable": r, "trainable_pct": 1.0},
            "eval": {"gsm8k": {"accuracy": 100.0 * sum(correct) / n, "n": n}},
        },
    )
    rows = [{"id": f"gsm8k/{i}", "answer": "1", "correct": bool(c)} for i, c in enumerate(correct)]
    (directory / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return directory


# --- item 2: every setting that differs between jobs is a column, and blocks pairing in another axis alone


def test_a_setting_a_search_drew_with_the_size_is_a_column_and_blocks_pairing_by_size(tmp_path):
    from analysis.collect import load
    from analysis.compare import CompareError, comparisons
    from analysis.tables import setting_columns, with_average

    job(tmp_path, "0", r=10, lr=1e-3, correct=[1, 0, 0, 1], digest="a")
    job(tmp_path, "1", r=12, lr=3e-4, correct=[1, 1, 1, 0], digest="b")
    df = load([tmp_path])
    assert "cfg/train.lr" in setting_columns(with_average(df, ["gsm8k"]))
    with pytest.raises(CompareError, match=r"nothing to compare|no two cells"):  # they differ in lr too
        comparisons(df, by="size")
    with pytest.raises(CompareError, match="no two cells"):  # and in size too
        comparisons(df, by="train.lr")
    assert len(comparisons(df)) == 1  # every pair, unrestricted: the one pair, labelled by both settings
    job(tmp_path, "2", r=12, lr=1e-3, correct=[0, 0, 0, 1], digest="c")
    found = comparisons(load([tmp_path]), by="size")  # now one pair differs in the size alone
    assert found[["a", "b"]].values.tolist() == [["lora size=10 train.lr=0.001", "lora size=12 train.lr=0.001"]]


# --- item 3: one experiment is one sample


def test_records_of_one_experiment_are_one_sample_not_seeds(tmp_path, caplog):
    from analysis.collect import load
    from analysis.tables import table

    for name in ("a", "b", "c"):  # an uninterrupted run and two resumed copies elsewhere: one config hash
        job(tmp_path, name, r=8, lr=1e-3, correct=[1, 0, 1, 1], digest="same")
    with caplog.at_level(logging.WARNING):
        df = load([tmp_path])
    assert len(df) == 1 and df["job"].iloc[0].endswith("a")
    assert "left out 2 record(s)" in caplog.text and "the same experiment as" in caplog.text
    numbers = table(df, "math")
    assert numbers["seeds"].tolist() == [1] and numbers["gsm8k n×k"].tolist() == ["4 × 1"]


# --- item 4: a trial skipped because its experiment finished elsewhere reports that job's values


def test_a_reused_trial_reports_the_finished_jobs_values(tmp_path):
    done = job(tmp_path, "done", r=8, lr=1e-3, correct=[1, 1, 0, 0], digest="h")
    skipped = tmp_path / "trial"
    skipped.mkdir()
    record = {"status": "skipped", "reason": f"already completed in {done}", "reused_from": str(done)}
    write_json(skipped / "results.json", record)
    settings = search.Settings.from_mapping({"n_trials": 1})
    study = optuna.create_study()
    trial = study.ask()
    search.tell(study, trial, skipped, settings)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE and study.trials[0].values == [50.0]
    assert study.trials[0].user_attrs["reused_from"] == str(done)


def test_an_objective_the_record_lacks_fails_the_trial_not_the_search(tmp_path):
    finished = job(tmp_path, "done", r=8, lr=1e-3, correct=[1, 0], digest="h")
    settings = search.Settings.from_mapping({"n_trials": 1, "objectives": ["accuracy/arc_e"]})
    study = optuna.create_study()
    search.tell(study, study.ask(), finished, settings)
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    assert "no objective 'arc_e'" in study.trials[0].user_attrs["reason"]


# --- items 9, 10, 12: a search's bad settings are one line before any trial


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lr=interval(1e-2,1e-4)", "low end 0.01 is above its high end 0.0001"),
        ("train.lr=tag(log,interval(0,1e-2))", "a log-scale interval needs a low end above 0"),
        ("adapter.r=int(interval(9,3))", "low end 9 is above its high end 3"),
    ],
)
def test_a_search_space_optuna_would_refuse_is_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        Space.parse(OverridesParser.create().parse_overrides([override]))


def test_an_objective_on_a_set_the_trials_do_not_evaluate_is_refused_before_any_trial():
    space = Space.parse(OverridesParser.create().parse_overrides(["train.lr=interval(1e-4,1e-2)"]))
    settings = search.Settings.from_mapping({"n_trials": 1, "objectives": ["accuracy/arc_e"]})
    with pytest.raises(ConfigError, match=r"'accuracy/arc_e' names a set the trials do not evaluate"):
        search.check_objectives(settings, OmegaConf.create({"eval": {"datasets": ["synthetic_math"]}}), space)
    evaluated = OmegaConf.create({"eval": {"datasets": ["arc_e"]}})
    search.check_objectives(settings, evaluated, space)  # evaluated: accepted


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path):
    settings = search.Settings.from_mapping({"n_trials": 1, "storage": "sqlite:////nonexistent/dir/x.db"})
    with pytest.raises(ConfigError) as raised:
        search.open_study(settings, tmp_path)
    assert "cannot be opened" in str(raised.value) and "\n" not in str(raised.value)
    assert "Background on this error" not in str(raised.value)


# --- item 5: a sweep owns its directory while it runs


def test_a_second_sweep_into_a_directory_where_one_runs_is_refused(tmp_path, capsys):
    from llm_adapters.job.sweep import SWEEP_LOCK, SweepSummary

    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}, "mode": "train"})
    (tmp_path / SWEEP_LOCK).write_text(f"{socket.gethostname()} {os.getpid()}\n")  # this process: alive
    with pytest.raises(SystemExit) as exited:
        SweepSummary().on_multirun_start(config)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: a sweep is running in") and err.count("\n") == 1
    (tmp_path / SWEEP_LOCK).write_text(f"{socket.gethostname()} {2**22 + 12345}\n")  # a killed sweep: welcome
    SweepSummary().on_multirun_start(config)
    assert (tmp_path / SWEEP_LOCK).read_text().split()[1] == str(os.getpid())
    SweepSummary().on_multirun_end(config)
    assert not (tmp_path / SWEEP_LOCK).exists()


# --- item 6: a sweep's job searches its own sweep directory, wherever it is


def test_a_sweeps_job_continues_a_killed_job_of_its_own_sweep_directory(tmp_path, monkeypatch):
    from llm_adapters.training import checkpoint
    from tests.test_seams import kill_at

    sweep_dir = tmp_path / "outside"  # not under paths.resume_search
    overrides = [*RESUMING, "train.save_every=2", f"paths.resume_search=[{tmp_path / 'elsewhere'}]"]
    cfg = make_config(*overrides)
    killed = sweep_dir / "0_trial"
    kill_at(monkeypatch, checkpoint, "save", killed, cfg, when=lambda _, step, *a, **k: step == 4, first=True)
    again = run(cfg, sweep_dir / "1_trial", sweep=True)  # the same settings asked again as a new trial
    assert again["status"] == "ok" and again["train"]["resumed_from"].endswith("step-4")
    assert json.loads((killed / "results.json").read_text())["status"] == "superseded"
    from llm_adapters.job.sweep import summarise

    counts, _ = summarise(sweep_dir)
    assert counts["failed"] == 0 and counts["ok"] == 1 and counts["superseded"] == 1


# --- item 8: a job recognises its own adapter; a directory whose owner cannot be told says so


def test_a_directory_with_an_adapter_of_unknown_configuration_names_what_it_holds(tmp_path):
    finished = tmp_path / "D"
    assert run(make_config(*RESUMING), finished)["status"] == "ok"
    (finished / "results.json").unlink()
    saved = json.loads((finished / "adapter" / "adapter_config.json").read_text())
    saved.pop("job")  # as an adapter saved before adapters recorded their job
    (finished / "adapter" / "adapter_config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"holds work whose configuration cannot be told \(adapter; .*mode=eval"):
        run(make_config(*RESUMING), finished)
    assert resume.holds_work(finished)["config_hash"] is None


def test_another_configurations_adapter_without_its_record_is_not_taken_for_this_ones(tmp_path):
    finished = tmp_path / "D"
    assert run(make_config(*RESUMING), finished)["status"] == "ok"
    (finished / "results.json").unlink()
    with pytest.raises(ConfigError, match="holds the work of another configuration"):
        run(make_config(*RESUMING, "train.lr=1e-3"), finished)


# --- items 11, 13: plan sweeps, budgets and sizes


def test_a_plan_that_cannot_be_made_is_a_recorded_skip_in_a_sweep_and_an_error_alone(tmp_path):
    from llm_adapters.errors import BudgetError
    from llm_adapters.job import plan
    from llm_adapters.job.sweep import plan_table

    cfg = make_config("mode=plan", "adapter=ia3", "+budget=one_percent")
    (tmp_path / "0_ia3" / ".hydra").mkdir(parents=True)
    assert plan.plan(cfg, tmp_path / "0_ia3", sweep=True) is None
    (tmp_path / "1_lora" / ".hydra").mkdir(parents=True)
    assert plan.plan(make_config("mode=plan", "adapter=lora"), tmp_path / "1_lora", sweep=True)["status"] == "ok"
    table, notes = plan_table(tmp_path)
    assert "lora" in table and notes == [
        "  skipped: 0_ia3: budget: adapter 'ia3' has no size key to solve for a budget"
    ]
    with pytest.raises(BudgetError):
        plan.plan(cfg, tmp_path / "alone")


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_budgets_max_size_must_be_positive(value):
    from llm_adapters.adapters import budget

    with pytest.raises(ConfigError, match=rf"budget.max_size must be a positive integer or null \(got {value}\)"):
        budget.apply(make_config("adapter=lora", "+budget=one_percent", f"budget.max_size={value}"))


def test_the_documented_budget_count_works_as_written():
    from run import budget_overrides

    assert budget_overrides(["+budget=one_percent", "budget.trainable=5000"]) == [
        "+budget=one_percent",
        "++budget.trainable=5000",
        "++budget.fraction=null",
    ]
    assert budget_overrides(["budget.trainable=5000"]) == ["++budget.trainable=5000", "++budget.fraction=null"]
    assert budget_overrides(["+budget=one_percent", "budget.fraction=0.05"]) == [
        "+budget=one_percent",
        "++budget.fraction=0.05",
    ]
    from llm_adapters.adapters import budget

    for arguments in (["+budget=one_percent", "budget.trainable=20000"], ["budget.trainable=20000"]):
        solved = budget.apply(make_config("adapter=lora", *budget_overrides(arguments)))
        assert solved.budget.target == 20000


def test_more_questions_asked_than_a_set_has_is_said_before_training(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="llm_adapters.evaluation"):
        results = run(make_config(*FAST, "eval.max_samples=150"), tmp_path)
    assert results["eval"]["synthetic_math"]["n"] == 8
    assert "eval.max_samples=150: synthetic_math has 8 questions, all of them scored" in caplog.text


# --- item 12: the analysis and rescore commands' bad input


@pytest.mark.parametrize("command", ["tables", "compare", "power", "interaction", "agreement"])
def test_an_analysis_of_nothing_is_one_line_and_exit_2(tmp_path, capsys, command):
    from analysis.__main__ import main

    empty = tmp_path / "empty"
    empty.mkdir()
    extra = {"interaction": [str(empty)], "agreement": ["--set", "arc_e"]}.get(command, [])
    for given, said in ((tmp_path / "absent", "does not exist"), (empty, "no results under")):
        assert main([command, str(given), *extra, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {given}" if said == "does not exist" else "error: no results under")
        assert said in err and err.count("\n") == 1


def test_rescore_with_an_unknown_set_is_one_line(capsys):
    from llm_adapters.rescore import main

    with pytest.raises(SystemExit) as exited:
        main(["--dataset", "nosuch", "--predictions", "p.jsonl"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "invalid choice: 'nosuch'" in err
