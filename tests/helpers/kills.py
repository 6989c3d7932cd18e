"""Kills inside a job, for tests: an exception raised inside the phase named, after which the job directory is left
as a ``kill -9`` at that instant leaves it (the record on disk then, a lock naming a process that no longer
exists)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llm_adapters import locks
from llm_adapters.job import phases
from llm_adapters.job.recipe import run


class Killed(BaseException):
    """Stands for a kill: raised inside a phase; the test then leaves what a kill -9 would have left."""


def as_killed(job_dir: Path, record: dict) -> None:
    """``job_dir`` as a kill -9 leaves it: ``record`` (what was on disk at that instant) and a dead process's lock."""
    (job_dir / "results.json").write_text(json.dumps(record))
    (job_dir / locks.LOCK).write_text(f"{os.uname().nodename} {2**22 + 12345}\n")  # no such process


def kill_at(monkeypatch, module, name: str, job_dir: Path, cfg, when=None, first: bool = False) -> None:
    """Run the job with ``module.name`` interrupted at its first call for which ``when(*args)`` holds (any call
    without it; ``first``: once the call has run), and leave the directory as a kill at that instant would."""
    real, left = getattr(module, name), {}

    def interrupted(*args, **kwargs):
        if when is not None and not when(*args, **kwargs):
            return real(*args, **kwargs)
        if first:
            real(*args, **kwargs)
        left.update(json.loads((job_dir / "results.json").read_text()))
        raise Killed

    monkeypatch.setattr(module, name, interrupted)
    with pytest.raises(Killed):
        run(cfg, job_dir)
    monkeypatch.undo()
    as_killed(job_dir, left)


def never_trained_again(monkeypatch, cfg, job_dir: Path) -> dict:
    monkeypatch.setattr(phases, "train", lambda *a, **k: pytest.fail("trained again"))
    try:
        return run(cfg, job_dir)
    finally:
        monkeypatch.undo()
