"""What the Optuna sweeper (``hydra_plugins/optuna_search``) needs besides Hydra and its search space
(``search.space``): its settings, the study in its storage, and each trial's objective values read from its job's
``results.json``.

Objectives are named by what a job records: ``accuracy`` (the mean accuracy over the job's evaluation sets, in
points), ``accuracy/<set>`` (one set's), ``trainable`` (trainable parameters) or ``trainable_pct``. A job skipped
because the same experiment had finished elsewhere reports that job's values. A job that did not end ``ok`` otherwise
(failed, skipped as a combination without meaning) is told to Optuna as failed, its reason kept in the trial's
``reason`` attribute.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock

from llm_adapters import files
from llm_adapters.errors import ConfigError
from llm_adapters.locks import process_alive
from llm_adapters.search import pruning
from llm_adapters.search.storage import storage

log = logging.getLogger(__name__)
OBJECTIVES = ("accuracy", "accuracy/<set>", "trainable", "trainable_pct")
UNMARKED_GRACE_S = 60.0  # a running trial not yet marked with its sweep: in flight this long after it was asked


@dataclass(frozen=True)
class Settings:
    """The sweeper's settings (``hydra.sweeper.*``), checked before any trial runs."""

    n_trials: int
    n_jobs: int
    directions: tuple[str, ...]
    objectives: tuple[str, ...]
    storage: str | None
    study_name: str
    seed: int | None
    params: Mapping[str, Any] | None
    pruner: Mapping[str, Any] | None = None  # Optuna's pruner for the trials' validation losses (search.pruning)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Settings:
        objectives = _as_tuple(raw.get("objectives") or ["accuracy"])
        directions = _as_tuple(raw.get("direction") or "maximize")
        for objective in objectives:
            if objective not in ("accuracy", "trainable", "trainable_pct") and not objective.startswith("accuracy/"):
                raise ConfigError(
                    f"hydra.sweeper.objectives: '{objective}' is not reported by jobs ({', '.join(OBJECTIVES)})"
                )
        for direction in directions:
            if direction not in ("maximize", "minimize"):
                raise ConfigError(f"hydra.sweeper.direction: '{direction}' is neither maximize nor minimize")
        if len(directions) != len(objectives):
            raise ConfigError(
                f"hydra.sweeper.direction: one per objective ({', '.join(objectives)}), got {len(directions)}"
            )
        if int(raw.get("n_trials", 0)) < 1 or int(raw.get("n_jobs", 1)) < 1:
            raise ConfigError("hydra.sweeper.n_trials and hydra.sweeper.n_jobs must be positive integers")
        spec = dict(raw.get("pruner") or {}) or None
        pruning.pruner(spec)  # an unknown pruner or arguments it refuses: one line now
        if spec and len(objectives) > 1:
            log.warning("hydra.sweeper.pruner: Optuna does not prune a study of several objectives; trials run whole")
            spec = None
        return cls(
            int(raw["n_trials"]),
            int(raw.get("n_jobs", 1)),
            directions,
            objectives,
            raw.get("storage"),
            str(raw.get("study_name") or "search"),
            raw.get("seed"),
            raw.get("params"),
            spec,
        )


def _as_tuple(value: Any) -> tuple[str, ...]:
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def storage_url(settings: Settings, sweep_dir: Path) -> str:
    """The study's storage: ``hydra.sweeper.storage``, or ``optuna.db`` in the sweep directory."""
    return settings.storage or f"sqlite:///{(sweep_dir / 'optuna.db').resolve()}"


def open_study(settings: Settings, sweep_dir: Path) -> Any:
    """The study in its storage, created or continued; trials an earlier run left running are told failed and
    asked again (so their jobs are reused or resumed by the harness, not lost).

    Sweeps sharing the study may start at once: on SQLite, opening is done under a file lock (two processes creating
    a new file's schema together fail in Optuna's migration step), and each sweep's sampler is seeded
    ``seed + k`` for the k-th sweep to open the study (the first keeps ``hydra.sweeper.seed``), so concurrent sweeps
    do not draw the same trials."""
    import optuna

    url = storage_url(settings, sweep_dir)
    with _opening(url):
        try:
            study = optuna.create_study(
                storage=storage(url),
                study_name=settings.study_name,
                directions=list(settings.directions),
                load_if_exists=True,
            )
        except Exception as error:  # SQLAlchemy's errors for a URL that cannot be opened
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""  # not SQLAlchemy's links
            raise ConfigError(
                f"hydra.sweeper.storage {url}: cannot be opened ({type(error).__name__}: {first})"
            ) from None
        opened = int(study.user_attrs.get("sweeps", 0))
        study.set_user_attr("sweeps", opened + 1)
        study.set_user_attr("objectives", list(settings.objectives))  # names the values for `python -m analysis search`
        seed = None if settings.seed is None else int(settings.seed) + opened
        single = len(settings.directions) == 1
        study.sampler = optuna.samplers.TPESampler(seed=seed) if single else optuna.samplers.NSGAIISampler(seed=seed)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if _in_flight(trial):
                continue  # another sweep sharing the study runs it now
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"continues": trial.number})
    return study


@contextmanager
def _opening(url: str) -> Iterator[None]:
    """A lock on ``<file>.lock`` beside a SQLite study's file while it is opened (nothing for other databases)."""
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    if path is None or not Path(path).parent.is_dir():
        yield  # not SQLite, or a directory that does not exist: create_study names what is wrong
        return
    with FileLock(f"{path}.lock", timeout=120):
        yield


def ask(study: Any) -> Any:
    """A new trial, marked with the sweep that runs it (host and process), so a sweep started later on the same
    study tells a trial in flight from one a killed sweep left running."""
    trial = study.ask()
    trial.set_user_attr("sweeper", f"{socket.gethostname()}:{os.getpid()}")
    return trial


def _in_flight(trial: Any) -> bool:
    """Whether the sweep that asked a running trial still runs: on this host, its process exists; on another,
    assumed so (it cannot be looked at from here: its trial stays running until that sweep tells it). A trial not
    yet marked was asked a moment ago (ask and mark are two writes) by a sweep alive then: in flight for a minute."""
    sweeper = trial.user_attrs.get("sweeper")
    if sweeper is None:
        started = trial.datetime_start
        return started is not None and (datetime.now() - started).total_seconds() < UNMARKED_GRACE_S
    host, _, pid = sweeper.rpartition(":")
    return process_alive(host, int(pid))


def finished(study: Any) -> int:
    """Trials that count toward ``n_trials``: every one that ended (complete, failed, pruned)."""
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done)) - _continued(study)


def _continued(study: Any) -> int:
    """Failed trials of a killed run that a later trial continues (not counted twice)."""
    return sum(1 for trial in study.get_trials(deepcopy=False) if "continues" in trial.user_attrs)


def check_objectives(settings: Settings, config: Mapping[str, Any], space: Any) -> None:
    """An ``accuracy/<set>`` objective names a set the trials evaluate (``eval.datasets``): refused in one line
    before any trial, where it would fail the first trial after its training. Not checked when the search varies
    the evaluation itself."""
    if any(p.key == "eval" or p.key.startswith("eval.") for p in space.params):
        return
    evaluated = [str(name) for name in config["eval"]["datasets"]]
    for objective in settings.objectives:
        name = objective.removeprefix("accuracy/")
        if objective.startswith("accuracy/") and name not in evaluated:
            raise ConfigError(
                f"hydra.sweeper.objectives: '{objective}' names a set the trials do not evaluate "
                f"(eval.datasets: {', '.join(evaluated)})"
            )


def values(results: Mapping[str, Any], objectives: Sequence[str]) -> list[float]:
    """The objective values a job's results record reports."""
    accuracies = {name: metrics["accuracy"] for name, metrics in (results.get("eval") or {}).items()}
    out = []
    for objective in objectives:
        if objective == "accuracy":
            out.append(sum(accuracies.values()) / len(accuracies))
        elif objective.startswith("accuracy/"):
            out.append(accuracies[objective.removeprefix("accuracy/")])
        else:
            out.append(float(results["params"][objective]))
    return out


def tell(study: Any, trial: Any, job_dir: Path, settings: Settings) -> None:
    """Tell Optuna how the trial's job ended: its objective values, or failed with the job's reason."""
    import optuna

    path = job_dir / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"status": "failed", "reason": "no results.json"}
    trial.set_user_attr("job_dir", str(job_dir))
    if results.get("status") == "skipped" and (done := reused(results)) is not None:
        trial.set_user_attr("reused_from", results["reused_from"])  # the same experiment, finished earlier
        results = done
    try:
        reported = values(results, settings.objectives) if results.get("status") == "ok" else None
    except KeyError as error:  # an objective its record does not hold: the trial fails, the search goes on
        results = {"status": "failed", "reason": f"its record has no objective {error}"}
    if results.get("status") != "ok":
        trial.set_user_attr("reason", f"{results.get('status')}: {results.get('reason')}")
        pruned = results.get("status") == "pruned"  # its pruner stopped it (llm_adapters.search.pruning)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.FAIL)
        return
    study.tell(trial, reported)


def reused(results: Mapping[str, Any]) -> dict[str, Any] | None:
    """The finished record a job skipped as already completed stands for (``reused_from``, as the job recorded it:
    relative to the working directory when below it), if it can be read."""
    path = Path(results.get("reused_from") or "") / "results.json"
    if not results.get("reused_from") or not path.is_file():
        return None
    earlier = files.read_results(path)
    return earlier if earlier is not None and earlier.get("status") == "ok" else None


def report(study: Any, settings: Settings) -> None:
    """The best trial (one objective) or the Pareto front (several), in the log."""
    import optuna

    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))  # a pruned one has values
    if not completed:
        log.warning("no trial completed")
        return
    for trial in study.best_trials if len(settings.directions) > 1 else [study.best_trial]:
        log.info("best: trial %d %s = %s (%s)", trial.number, settings.objectives, trial.values, trial.params)
