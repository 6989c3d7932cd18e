"""Stopping a search's hopeless trials early: a trial job reports its validation loss to its Optuna study at every
``train.eval_every`` and stops when the study's pruner says so.

The sweeper (``hydra/sweeper=optuna_search`` with ``hydra.sweeper.pruner``) gives each trial's job a ``search``
block: the study's storage and name, the trial's id and the pruner. The job reaches the storage itself, so it
reports from any process or node the launcher put it on. Optuna's pruners compare intermediate values in the study's
direction; for a study that maximizes (accuracy), the value reported is the negated validation loss, so a trial whose
loss is high is the one that looks bad. A pruned job raises ``Pruned``, which ends it ``pruned`` with its partial
record (losses so far, its checkpoints) kept, not failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llm_adapters.errors import ConfigError

OnLog = Callable[[dict[str, float], int], None]


class Pruned(Exception):
    """The study's pruner stopped this trial at a validation step."""


def pruner(spec: Mapping[str, Any] | None) -> Any:
    """Optuna's pruner named by ``spec`` (``{type: MedianPruner, n_startup_trials: 2, ...}``: the class in
    ``optuna.pruners`` and its arguments); None for no spec."""
    if not spec:
        return None
    import optuna

    kwargs = {k: v for k, v in spec.items() if k != "type"}
    name = str(spec.get("type"))
    known = [n for n in dir(optuna.pruners) if n.endswith("Pruner") and n not in ("BasePruner", "NopPruner")]
    if name not in known:
        raise ConfigError(f"hydra.sweeper.pruner.type: '{name}' is not one of Optuna's pruners ({', '.join(known)})")
    try:
        return getattr(optuna.pruners, name)(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"hydra.sweeper.pruner: {name} refuses {kwargs}: {error}") from None


def check(spec: Mapping[str, Any] | None, val_set_size: int) -> None:
    """A pruner without a validation split has nothing to judge a trial by: one line, before any trial runs."""
    if spec and not val_set_size:
        raise ConfigError(
            "hydra.sweeper.pruner prunes on validation loss: set train.val_set_size (and train.eval_every)"
        )


def trial_overrides(spec: Mapping[str, Any] | None, storage: str, study: str, trial: Any) -> list[str]:
    """The ``search`` block through which a trial's job reports its validation losses (none without a pruner)."""
    if not spec:
        return []
    pruner_override = f"++search.pruner={{{','.join(f'{key}:{value}' for key, value in spec.items())}}}"  # one key
    # Optuna has no public lookup of a trial by number for another process: its id is what Trial(study, id) takes.
    return [
        f"++search.storage='{storage}'",
        f"++search.study={study}",
        f"++search.trial={trial._trial_id}",
        pruner_override,
    ]


def reporting(search: Mapping[str, Any] | None, on_log: OnLog) -> OnLog:
    """``on_log`` that also reports every validation loss to the job's trial and raises ``Pruned`` when its pruner
    says so; ``on_log`` itself for a job that is not a pruned search's trial."""
    if not search or not search.get("pruner"):
        return on_log
    import optuna

    from llm_adapters.search.storage import storage

    study = optuna.load_study(
        study_name=search["study"], storage=storage(search["storage"]), pruner=pruner(search["pruner"])
    )
    trial = optuna.trial.Trial(study, int(search["trial"]))
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0

    def log(metrics: dict[str, float], step: int) -> None:
        on_log(metrics, step)
        if "val/loss" in metrics:
            trial.report(sign * metrics["val/loss"], step)
            if trial.should_prune():
                raise Pruned(
                    f"pruned at step {step} by {search['pruner']['type']} (validation loss {metrics['val/loss']:.4f})"
                )

    return log
