"""Pruning a search's trials on validation loss: a trial job reports every validation loss to its study from its
own process (through the storage) and ends ``pruned`` when the pruner says so, its partial record kept; the
sweeper tells Optuna so; a pruner Optuna lacks, or one without a validation split, is one line."""

import json

import optuna
import pytest

from llm_adapters import search
from llm_adapters.errors import ConfigError
from llm_adapters.job.recipe import run
from llm_adapters.search import pruning
from tests.helpers.configs import FAST, make_config
from tests.helpers.processes import run_py

VALIDATED = ["train.val_set_size=8", "train.eval_every=2"]  # FAST trains 6 steps: losses at steps 2, 4 and 6


def _trial_job(tmp_path, lower):
    """One trial of a maximized study whose job runs in this process, pruned when -loss < ``lower``."""
    settings = search.Settings.from_mapping({"n_trials": 2, "pruner": {"type": "ThresholdPruner", "lower": lower}})
    study = search.open_study(settings, tmp_path)
    trial = study.ask()
    reporting = pruning.trial_overrides(settings.pruner, search.storage_url(settings, tmp_path), "search", trial)
    results = run(make_config(*FAST, *VALIDATED, *reporting), tmp_path / f"trial{trial.number}")
    search.tell(study, trial, tmp_path / f"trial{trial.number}", settings)
    return results, study.trials[trial.number]


@pytest.mark.slow  # two small jobs: the quick suite keeps within its ten minutes
def test_a_trial_reports_minus_its_validation_loss_and_runs_whole_when_not_pruned(tmp_path):
    results, trial = _trial_job(tmp_path, lower=-1e9)
    assert results["status"] == "ok" and trial.state == optuna.trial.TrialState.COMPLETE
    reported = {step: -value for step, value in results["train"]["val_history"]}
    assert trial.intermediate_values == pytest.approx(reported) and sorted(reported) == [2, 4, 6]
    assert results["config_hash"] == run(make_config(*FAST, *VALIDATED), tmp_path / "alone")["config_hash"]


@pytest.mark.slow  # a small job: the quick suite keeps within its ten minutes
def test_a_pruned_trial_ends_pruned_with_its_record_and_is_told_so(tmp_path):
    results, trial = _trial_job(tmp_path, lower=0.0)  # -loss is below 0 at the first validation step
    assert results["status"] == "pruned" and results["reason"].startswith("pruned at step 2 by ThresholdPruner")
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [2]
    recorded = json.loads((tmp_path / "trial0" / "results.json").read_text())
    assert recorded["status"] == "pruned" and recorded["config"]["train"]["val_set_size"] == 8
    assert not (tmp_path / "trial0" / "adapter").exists()  # stopped before the end: nothing saved as final


def test_bad_pruner_settings_are_one_line():
    with pytest.raises(ConfigError, match="'Median' is not one of Optuna's pruners"):
        pruning.pruner({"type": "Median"})
    with pytest.raises(ConfigError, match="MedianPruner refuses"):
        pruning.pruner({"type": "MedianPruner", "n_startup": 2})
    settings = search.Settings.from_mapping({"n_trials": 1, "pruner": {"type": "MedianPruner"}})
    with pytest.raises(ConfigError, match=r"prunes on validation loss: set train\.val_set_size"):
        pruning.check(settings.pruner, 0)
    several = {"n_trials": 1, "objectives": ["accuracy", "trainable"], "direction": ["maximize", "minimize"]}
    assert search.Settings.from_mapping({**several, "pruner": {"type": "MedianPruner"}}).pruner is None


@pytest.mark.slow  # a search of three subprocess trials
def test_a_search_with_a_pruner_prunes_through_the_sweeper(tmp_path):
    job = run_py(
        "-m",
        "hydra/sweeper=optuna_search",
        "hydra.sweeper.n_trials=3",
        "+hydra.sweeper.pruner={type: ThresholdPruner, lower: 0.0}",
        "adapter=choice(lora,series)",
        *FAST,
        *VALIDATED,
        f"hydra.sweep.dir={tmp_path}",
    )
    out, _ = job.communicate(timeout=600)
    assert job.returncode == 0, out
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 3
    assert "3 jobs, 0 ok, 0 failed, 0 skipped, 3 pruned" in out
    assert all("search" not in p.name for p in tmp_path.glob("*_*"))  # the job directories name the settings alone
