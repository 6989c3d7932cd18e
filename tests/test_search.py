"""The Optuna sweeper: a search runs its trials as ordinary jobs and tells Optuna each job's recorded values; the
same command continues the study without repeating a trial; a trial a killed run left running is asked again; a
kind's own key is drawn only for that kind; several objectives give a non-dominated front; bad settings are one
line before any trial."""

import json
import socket
import subprocess
import sys
import time

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from llm_adapters import search
from llm_adapters.search.space import Space
from tests.helpers.configs import FAST
from tests.helpers.processes import run_py

SPACE = ["adapter=choice(lora,series)", "adapter.r=int(interval(2,16))", "train.lr=tag(log,interval(1e-4,1e-2))"]


def parsed(*overrides):
    return Space.parse(OverridesParser.create().parse_overrides(list(overrides)))


def test_the_space_is_read_from_the_sweep_grammar_and_a_kinds_key_is_only_drawn_for_it():
    space = parsed(*reversed(SPACE), "seed=3")
    assert space.params[0].key == "adapter" and space.fixed == ("seed=3",)  # the kind drawn first
    kinds = {p.key: p.distribution for p in space.params}
    assert kinds["adapter.r"] == optuna.distributions.IntDistribution(2, 16)
    assert kinds["train.lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        overrides = space.overrides(trial)
        kind = trial.params["adapter"]
        assert ("adapter.r" in trial.params) == (kind == "lora")  # series has no r: not drawn, not passed
        assert any(o.startswith("adapter.r=") for o in overrides) == (kind == "lora")
        study.tell(trial, 0.0)


def dead_sweeper() -> str:
    """A sweep's mark whose process has ended."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return f"{socket.gethostname()}:{int(ended.stdout)}"


def test_a_trial_a_killed_run_left_running_is_asked_again(tmp_path):
    settings = search.Settings.from_mapping({"n_trials": 2})
    study = search.open_study(settings, tmp_path)
    left = search.ask(study)  # a sweep killed while this trial's job ran
    left.set_user_attr("sweeper", dead_sweeper())
    drawn = left.suggest_categorical("adapter", ["lora", "series"])
    again = search.open_study(settings, tmp_path)
    assert again.trials[left.number].state == optuna.trial.TrialState.FAIL
    assert search.finished(again) == 0  # not counted: it is asked again
    continued = again.ask()
    assert continued.user_attrs["continues"] == left.number
    assert continued.suggest_categorical("adapter", ["lora", "series"]) == drawn  # its settings again
    in_flight = search.ask(again)  # marked with this process, which lives: another sweep leaves it running
    assert search.open_study(settings, tmp_path).trials[in_flight.number].state == optuna.trial.TrialState.RUNNING


def test_a_trial_asked_but_not_yet_marked_is_in_flight_for_a_minute(tmp_path, monkeypatch):
    settings = search.Settings.from_mapping({"n_trials": 2})
    unmarked = search.open_study(settings, tmp_path).ask()  # another sweep between its ask and its mark
    running = optuna.trial.TrialState.RUNNING
    assert search.open_study(settings, tmp_path).trials[unmarked.number].state == running
    monkeypatch.setattr(search, "UNMARKED_GRACE_S", 0.0)  # the minute over: a sweep killed between the two writes
    assert search.open_study(settings, tmp_path).trials[unmarked.number].state == optuna.trial.TrialState.FAIL


def test_each_sweep_opening_a_study_draws_from_its_own_seed_the_first_from_the_configured_one(tmp_path):
    settings = search.Settings.from_mapping({"n_trials": 4, "seed": 7})

    def first_draw(directory):
        directory.mkdir(exist_ok=True)
        trial = search.open_study(settings, directory).ask()
        return trial.suggest_float("x", 0.0, 1.0)

    alone = first_draw(tmp_path / "a")
    assert first_draw(tmp_path / "b") == alone  # a study's first sweep: the seed given, reproducible
    assert first_draw(tmp_path / "b") != alone  # a second sweep on the same study: seed + 1, other trials
    assert (
        optuna.load_study(study_name="search", storage=search.storage_url(settings, tmp_path / "b")).user_attrs[
            "sweeps"
        ]
        == 2
    )


def test_sweeps_opening_one_new_sqlite_study_at_once_all_succeed(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    code = (  # imports first, then all four open the study at one moment
        "import sys, time; from pathlib import Path; from llm_adapters import search; "
        "s = search.Settings.from_mapping({'n_trials': 1, 'storage': sys.argv[1]}); "
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time())); search.open_study(s, Path('.')).ask()"
    )
    at = str(time.time() + 10)
    openers = [
        subprocess.Popen([sys.executable, "-c", code, storage, at], stderr=subprocess.PIPE, text=True) for _ in range(4)
    ]
    for opener in openers:
        _, err = opener.communicate(timeout=300)
        assert opener.returncode == 0, err  # without the lock: "table alembic_version already exists" in some
    study = optuna.load_study(study_name="search", storage=storage)
    assert study.user_attrs["sweeps"] == 4 and len(study.trials) == 4


@pytest.mark.slow  # eight small jobs in two sweeps (about a minute alone)
def test_a_search_runs_its_trials_and_the_same_command_continues_it(tmp_path):
    def sweep(n_trials):
        args = ["-m", "hydra/sweeper=optuna_search", f"hydra.sweeper.n_trials={n_trials}", *SPACE, *FAST]
        job = run_py(*args, f"hydra.sweep.dir={tmp_path}")
        out, _ = job.communicate(timeout=600)
        assert job.returncode == 0, out
        return optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 'optuna.db'}")

    study = sweep(3)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial in study.trials:  # each trial is an ordinary job, and its value is what the job recorded
        results = json.loads((tmp_path / trial.user_attrs["job_dir"] / "results.json").read_text())
        assert results["status"] == "ok" and trial.values == [results["eval"]["synthetic_math"]["accuracy"]]
        assert (
            results["adapter"] == trial.params["adapter"]
            and results["config"]["train"]["lr"] == trial.params["train.lr"]
        )
    first = [(t.number, t.params) for t in study.trials]
    study = sweep(5)  # the same command, more trials: the three are not run again
    assert len(study.trials) == 5 and [(t.number, t.params) for t in study.trials[:3]] == first
    assert len(list(tmp_path.glob("*/results.json"))) == 5


def test_several_objectives_give_a_non_dominated_front(tmp_path):
    settings = search.Settings.from_mapping(
        {"n_trials": 6, "objectives": ["accuracy", "trainable"], "direction": ["maximize", "minimize"]}
    )
    study = search.open_study(settings, tmp_path)
    points = [(10, 500), (20, 800), (15, 400), (5, 900), (20, 700), (12, 450)]
    for accuracy, trainable in points:
        job = tmp_path / f"job{accuracy}_{trainable}"
        job.mkdir()
        record = {"status": "ok", "eval": {"a": {"accuracy": accuracy}}, "params": {"trainable": trainable}}
        (job / "results.json").write_text(json.dumps(record))
        search.tell(study, study.ask(), job, settings)
    front = sorted(tuple(t.values) for t in study.best_trials)
    assert front == [(15, 400), (20, 700)]  # each of the others has one more accurate and smaller


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["hydra.sweeper.objectives=[loss]"], "error: hydra.sweeper.objectives: 'loss' is not reported by jobs"),
        pytest.param(
            ["hydra.sweeper.direction=up"],
            "error: hydra.sweeper.direction: 'up' is neither maximize nor minimize",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["hydra.sweeper.storage=postgresql://nowhere.invalid/x"],
            "error: hydra.sweeper.storage postgresql://",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_search_settings_are_one_line_before_any_trial(overrides, message, tmp_path):
    job = run_py(
        "-m",
        "hydra/sweeper=optuna_search",
        *overrides,
        "adapter=choice(lora,series)",
        *FAST,
        f"hydra.sweep.dir={tmp_path}",
    )
    out, _ = job.communicate(timeout=300)
    assert job.returncode == 2 and message in out, out
    assert not list(tmp_path.glob("*/results.json"))  # no trial ran


@pytest.mark.slow  # two searches at once, six small jobs (about a minute alone)
def test_two_sweeps_sharing_one_study_draw_distinct_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["-m", "hydra/sweeper=optuna_search", "hydra.sweeper.n_trials=4", *SPACE, *FAST]
    args.append(f"hydra.sweeper.storage='{storage}'")
    first = run_py(*args, f"hydra.sweep.dir={tmp_path / 'a'}")
    second = run_py(*args, f"hydra.sweep.dir={tmp_path / 'b'}")
    for job in (first, second):
        out, _ = job.communicate(timeout=600)
        assert job.returncode == 0, out
    study = optuna.load_study(study_name="search", storage=storage)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) >= 4  # one study: every trial numbered once, by both sweeps together
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in study.trials)  # each told by its own sweep
    ran = sorted(int(p.parent.name.split("_")[0]) for p in tmp_path.glob("[ab]/*/results.json"))
    assert ran == sorted(t.number for t in study.trials)


@pytest.mark.slow  # a search through submitit's local launcher: its jobs are other processes
def test_a_search_through_another_launcher_prunes_from_the_jobs_own_processes(tmp_path):
    job = run_py(
        "-m",
        "hydra/sweeper=optuna_search",
        "hydra/launcher=submitit_local",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "+hydra.sweeper.pruner={type: ThresholdPruner, lower: 0.0}",
        "adapter=choice(lora,series)",
        "train.val_set_size=8",
        "train.eval_every=2",
        *FAST,
        f"hydra.sweep.dir={tmp_path}",
    )
    out, _ = job.communicate(timeout=600)
    assert job.returncode == 0, out
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(t.intermediate_values for t in study.trials)  # reported by the submitit jobs themselves
    assert list(tmp_path.glob(".submitit/*"))  # submitit ran them
