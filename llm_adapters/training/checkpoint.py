"""Training checkpoints: enough to continue a killed job exactly where it was.

A checkpoint holds the trainable weights (safetensors), the optimizer and scheduler states, the RNG states (global
torch, CUDA, and the generator of the data order) and the data position, in ``checkpoints/step-<N>/``. It is
written into a temporary folder and renamed into place, so a kill at any moment leaves either the previous
checkpoint or the new one, never half of one. State is read back with ``torch.load(weights_only=True)``: nothing is
unpickled beyond tensors and plain containers.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from llm_adapters.adapters import adapter_state_dict, load_adapter_state
from llm_adapters.errors import CheckpointError
from llm_adapters.files import written_whole

KEEP = 2  # checkpoints kept: the newest, and the one before it in case the newest cannot be read
log = logging.getLogger(__name__)


def newest_first(directory: Path) -> list[Path]:
    """The complete checkpoints (``step-<n>``) in a job's ``checkpoints`` directory, newest first: what a rerun
    continues from (``checkpoint`` writes them)."""
    found = [p for p in directory.glob("step-*") if p.name.removeprefix("step-").isdigit()]
    return sorted(found, key=lambda p: -int(p.name.removeprefix("step-")))


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory``, if any."""
    return next(iter(newest_first(directory)), None)


class Preempted(RuntimeError):
    """SIGTERM (what SLURM sends before preemption) or SIGINT arrived; a checkpoint was saved first."""


def save(
    directory: Path,
    step: int,
    model: torch.nn.Module,
    training_state: dict[str, Any],
    best: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``directory/step-<step>`` atomically and drop all but the previous one (kept in case this one turns out
    unreadable); ``best``: the weights of the best validation step so far (train.keep=best), kept beside."""
    final = directory / f"step-{step}"
    tmp = directory / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with written_whole(final, tmp):  # a leftover of the same step (a run started over) is replaced whole
        save_file(adapter_state_dict(model), str(tmp / "weights.safetensors"))
        if best is not None:
            save_file(best, str(tmp / "best.safetensors"))
        torch.save(training_state, tmp / "state.pt")
    for older in newest_first(directory)[KEEP:]:
        shutil.rmtree(older, ignore_errors=True)
    return final


def load_usable(path: Path, model: torch.nn.Module) -> tuple[dict[str, Any], Path]:
    """The state of checkpoint ``path`` put into ``model``, or, when it cannot be read (a disk that filled up, a
    file truncated by hand), of the newest older one beside it; and the one used. None usable: a CheckpointError that
    says how to start over."""
    candidates = [path, *(p for p in newest_first(path.parent) if int(p.name[5:]) < int(path.name[5:]))]
    for candidate in candidates:
        try:
            return load(candidate, model), candidate
        except CheckpointError as error:
            log.warning("%s; trying an earlier checkpoint", error)
    raise CheckpointError(
        f"no usable checkpoint in {path.parent} (the newest, {path.name}, cannot be read): "
        "rerun with train.resume=false to start over"
    )


def load(path: Path, model: torch.nn.Module) -> dict[str, Any]:
    """Put the checkpoint's weights into ``model`` and return the rest of its state (with ``best_weights``, the best
    validation step's, when it kept some)."""
    try:
        weights = load_file(str(path / "weights.safetensors"))
        state = torch.load(path / "state.pt", weights_only=True)
        if (path / "best.safetensors").is_file():
            state["best_weights"] = load_file(str(path / "best.safetensors"))
    except Exception as error:  # a truncated or foreign file fails in many ways; all of them mean the same here
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error})") from None
    if (problem := load_adapter_state(model, weights)) is not None:
        raise CheckpointError(f"checkpoint {path} does not match this model's adapter: {problem}")
    return state


def preemption_signal() -> signal.Signals:
    """The signal submitit listens on for preemption and time limits (SLURM's ``--signal``; USR2 unless
    ``SUBMITIT_PREEMPT_SIGNAL`` names another)."""
    return signal.Signals["SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")]


def requeue_under_submitit() -> None:
    """Under submitit, once the job's checkpoint is saved: pass the stop on to the handler submitit installed for
    its preemption signal, which requeues the job (the rerun continues from that checkpoint, in the same directory)
    and exits. Anywhere else, nothing."""
    if os.environ.get("SUBMITIT_EXECUTOR"):
        os.kill(os.getpid(), preemption_signal())


@contextmanager
def stop_signals(active: bool) -> Iterator[list[int]]:
    """While active: SIGTERM (what SLURM sends before preemption), SIGINT (Ctrl-C) and submitit's preemption signal
    are noted, not obeyed, so the run ends at the next step boundary after a checkpoint instead of mid-step with a
    traceback (and, under submitit, is then requeued: ``requeue_under_submitit``)."""
    received: list[int] = []
    previous: dict[int, Any] = {}
    if active and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT, preemption_signal()):
            previous[sig] = signal.signal(sig, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def sigterm_stops() -> Iterator[None]:
    """Outside training (which checkpoints first: ``stop_signals``), SIGTERM raises ``Preempted`` where the job is,
    so a job stopped while loading or evaluating records why and says so in one line (and, under submitit, is
    requeued), instead of vanishing with exit 143. Its rerun evaluates the saved adapter."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Preempted(f"{signal.Signals(signum).name} outside training (the saved adapter, if any, is kept)")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
