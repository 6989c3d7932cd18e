"""Where a search's study lives: Optuna's storage for a URL, shared by the sweeper (``search``) and the trials that
report to it (``pruning``)."""

from __future__ import annotations

from typing import Any


def storage(url: str) -> Any:
    """Optuna's storage for ``url``; on SQLite with a 60 s wait for a writer (two sweeps or a sweep and its jobs
    writing at once), where the driver's default of 5 s can fail a trial's report."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite:") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
