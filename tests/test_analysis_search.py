"""``python -m analysis search``: the trials of a study the sweeper kept, the best trial or the Pareto front with
intervals from the trials' per-question scores, and the figures."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.search import SearchError, accuracy_interval, write
from llm_adapters import search
from llm_adapters.stats.intervals import wilson

# (adapter, correct of 40 on each of two sets, trainable): three kinds, one front
TRIALS = [("lora", (10, 14), 500), ("series", (30, 26), 800), ("lora", (20, 20), 400), ("parallel", (31, 29), 900)]


def _job(directory, correct, trainable, predictions=True):
    directory.mkdir()
    rows, metrics = [], {}
    for name, k in zip(("arc_e", "boolq"), correct, strict=True):
        metrics[name] = {"accuracy": 100 * k / 40, "n": 40}
        rows += [{"id": f"{name}/{i}", "correct": i < k} for i in range(40)]
    (directory / "results.json").write_text(
        json.dumps({"status": "ok", "eval": metrics, "params": {"trainable": trainable}})
    )
    if predictions:
        (directory / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _study(tmp_path, objectives, directions):
    settings = search.Settings.from_mapping({"n_trials": 5, "objectives": objectives, "direction": directions})
    study = search.open_study(settings, tmp_path)
    for i, (kind, correct, trainable) in enumerate(TRIALS):
        study.enqueue_trial({"adapter": kind})
        trial = study.ask()
        trial.suggest_categorical("adapter", ["lora", "series", "parallel"])
        _job(tmp_path / f"{i}_job", correct, trainable)
        search.tell(study, trial, tmp_path / f"{i}_job", settings)
    failed = study.ask()
    (tmp_path / "4_job").mkdir()
    (tmp_path / "4_job" / "results.json").write_text(json.dumps({"status": "skipped", "reason": "no meaning"}))
    search.tell(study, failed, tmp_path / "4_job", settings)
    return study


def test_a_front_with_intervals_and_figures(tmp_path):
    _study(tmp_path, ["accuracy", "trainable"], ["maximize", "minimize"])
    written = write(tmp_path, tmp_path / "out")
    assert written["trials"] == 5 and written["completed"] == 4 and written["pareto"] is True
    trials = pd.read_csv(tmp_path / "out" / "trials.csv")
    assert trials["state"].tolist() == ["COMPLETE"] * 4 + ["FAIL"]
    assert trials.loc[4, "reason"] == "skipped: no meaning"
    assert trials["accuracy"].iloc[:4].tolist() == [30.0, 70.0, 50.0, 75.0]
    # the front: (50, 400), (70, 800), (75, 900); the first trial is dominated by the third
    assert sorted(written["best"]) == [1, 2, 3]
    assert (trials["accuracy low"].iloc[:4] < trials["accuracy"].iloc[:4]).all()
    assert (trials["accuracy high"].iloc[:4] > trials["accuracy"].iloc[:4]).all()
    assert written["first_tied_with_best"] == 1  # 70 lies inside 75's interval on 80 questions; 30 and 50 do not
    assert written["history"] == [30.0, 70.0, 70.0, 75.0]  # the best so far
    for figure in ("history.png", "pareto.png"):
        assert (tmp_path / "out" / figure).stat().st_size > 10_000
    best = (tmp_path / "out" / "best.md").read_text().splitlines()
    assert "accuracy low" in best[0] and len(best) == 2 + 3  # header, rule, the three trials of the front


def test_an_interval_is_the_question_bootstrap_and_without_predictions_wilson(tmp_path):
    _job(tmp_path / "a", (12, 30), 1)
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    (low, high), basis = accuracy_interval(tmp_path / "a", results, "accuracy/arc_e")
    assert basis == "questions"
    w_low, w_high = wilson(12, 40)  # a bootstrap of 40 questions is close to Wilson's interval, not equal to it
    assert abs(low - w_low) < 4 and abs(high - w_high) < 4
    _job(tmp_path / "b", (12, 30), 1, predictions=False)
    assert accuracy_interval(tmp_path / "b", results, "accuracy") == (list(wilson(42, 80)), "counts")
    (low, high), _ = accuracy_interval(tmp_path / "a", results, "accuracy")
    assert low < 52.5 < high and np.isclose((high - low), (w_high - w_low) / np.sqrt(2), atol=4)


def test_one_objective_gives_the_best_trial_and_a_moved_study_finds_its_jobs(tmp_path):
    (tmp_path / "sweep").mkdir()
    _study(tmp_path / "sweep", ["accuracy"], ["maximize"])
    moved = tmp_path / "elsewhere"
    (tmp_path / "sweep").rename(moved)  # as a clone of committed results: the recorded paths are gone
    written = write(moved, moved / "out")
    assert written["best"] == [3] and written["pareto"] is False
    assert pd.read_csv(moved / "out" / "trials.csv")["adapter"].tolist() == [k for k, *_ in TRIALS] + [np.nan]
    assert pd.read_csv(moved / "out" / "trials.csv")["accuracy low"].notna().sum() == 4


def test_a_directory_without_a_study_is_one_line(tmp_path, capsys):
    with pytest.raises(SearchError, match=r"no optuna\.db"):
        write(tmp_path, tmp_path / "out")
    assert main(["search", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path}: no optuna.db")
