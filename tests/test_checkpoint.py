"""A job killed mid-training (SIGKILL) or preempted (SIGTERM) and started again ends with the same adapter weights
as an uninterrupted run: real subprocesses, real signals."""

import json
import os
import signal
import time

import pytest
import torch
from safetensors.torch import load_file

from llm_adapters.training.checkpoint import CheckpointError, load
from tests.helpers.configs import make_config
from tests.helpers.processes import run_py

ARGS = [
    "logger=none",
    "dataset.train_size=256",
    "dataset.test_size=2",
    "train.max_steps=40",
    "train.save_every=5",
    "train.log_every=5",
    "train.warmup_steps=5",
    "eval.max_new_tokens=4",
]


def weights(job_dir):
    return load_file(job_dir / "adapter" / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    proc = run_py(*ARGS, f"paths.resume_search=[{root}]", f"hydra.run.dir={root / 'job'}")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return root / "job"


def interrupt(root, sig):
    """Start a job, wait for its checkpoint at step 10 or later, then send ``sig``; returns the job directory."""
    job = root / "first"
    proc = run_py(*ARGS, f"paths.resume_search=[{root}]", f"hydra.run.dir={job}")
    deadline = time.monotonic() + 300
    while not any(int(p.name[5:]) >= 10 for p in (job / "checkpoints").glob("step-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "the job ended before its checkpoint"
        time.sleep(0.05)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    if sig != signal.SIGKILL:  # an expected stop: one line, no traceback
        assert "Traceback" not in out, out[-3000:]
        assert f"stopped: {sig.name} at step" in out and "the same command continues from it" in out
    return job


def resume(root):
    proc = run_py(*ARGS, f"paths.resume_search=[{root}]", f"hydra.run.dir={root / 'second'}")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return json.loads((root / "second" / "results.json").read_text())


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_resumed_job_ends_with_the_same_weights(tmp_path, uninterrupted, sig):
    first = interrupt(tmp_path, sig)
    killed = json.loads((first / "results.json").read_text())
    if sig != signal.SIGKILL:  # preemption or Ctrl-C: a checkpoint at the current step, then a recorded exit
        assert killed["status"] == "failed" and killed["reason"].startswith(f"Preempted: {sig.name} at step")
    else:
        assert killed["status"] == "running"
    results = resume(tmp_path)
    assert results["status"] == "ok"
    assert results["train"]["resumed_from"].startswith(str(first / "checkpoints" / "step-"))
    reference = json.loads((uninterrupted / "results.json").read_text())
    assert results["train"]["loss_history"] == reference["train"]["loss_history"]
    mine, theirs = weights(tmp_path / "second"), weights(uninterrupted)
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not (tmp_path / "second" / "checkpoints").exists()  # removed once the final adapter is saved
    earlier = json.loads((first / "results.json").read_text())  # the killed job: continued to the end by the second
    assert earlier["status"] == "superseded" and earlier["superseded_by"] == str(tmp_path / "second")
    assert not (first / "checkpoints").exists()


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    from tests.helpers.configs import build_model

    model, *_ = build_model(make_config())
    (tmp_path / "step-5").mkdir()
    (tmp_path / "step-5" / "weights.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match=r"checkpoint .*step-5 cannot be read"):
        load(tmp_path / "step-5", model)


def test_schedule_equals_transformers_linear_warmup():
    from transformers import get_linear_schedule_with_warmup

    from llm_adapters.training.optimization import linear_warmup_decay

    lrs = []
    for make in (linear_warmup_decay, get_linear_schedule_with_warmup):
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
        scheduler = make(optimizer, 7, 30)
        lrs.append([])
        for _ in range(35):
            lrs[-1].append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
    assert lrs[0] == lrs[1]


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
def test_rerun_in_the_same_directory_continues_then_is_skipped(tmp_path, uninterrupted):
    """How SLURM requeues a preempted job and how a study is rerun into its fixed directory: the same command in the
    same directory continues from its own checkpoint, and once done, is not run again."""
    first = interrupt(tmp_path, signal.SIGTERM)
    args = [*ARGS, f"paths.resume_search=[{tmp_path / 'elsewhere'}]", f"hydra.run.dir={first}"]
    proc = run_py(*args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    results = json.loads((first / "results.json").read_text())
    assert results["status"] == "ok"
    assert results["train"]["resumed_from"].startswith(str(first / "checkpoints" / "step-"))
    mine, theirs = weights(first), weights(uninterrupted)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    again = run_py(*args)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0 and "already completed in this directory" in out
    assert json.loads((first / "results.json").read_text()) == results  # the record is kept, not overwritten


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
@pytest.mark.parametrize("sig", [signal.SIGUSR2, signal.SIGTERM], ids=["SIGUSR2", "SIGTERM"])
def test_submitit_requeues_a_preempted_job_and_it_continues_in_place(tmp_path, uninterrupted, sig):
    """SLURM's warning before a time limit (``--signal=USR2@90``, what submitit listens on) or a preemption's
    SIGTERM, to a job under submitit: it checkpoints, submitit requeues it, and the rerun continues in its own
    directory from that checkpoint to the weights of an uninterrupted run. submitit_local requeues as SLURM would."""
    sweep = tmp_path / "sweep"
    args = [*ARGS, f"paths.resume_search=[{tmp_path / 'elsewhere'}]", f"hydra.sweep.dir={sweep}"]
    proc = run_py("-m", "hydra/launcher=submitit_local", *args)
    deadline = time.monotonic() + 300
    while not any(int(p.name[5:]) >= 10 for p in sweep.glob("*/checkpoints/step-*")):
        assert proc.poll() is None and time.monotonic() < deadline, "the job ended before its checkpoint"
        time.sleep(0.05)
    (lock,) = sweep.glob("*/.running")
    os.kill(int(lock.read_text().split()[1]), sig)  # the job's own process, as SLURM signals it
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    job = lock.parent
    results = json.loads((job / "results.json").read_text())
    assert results["status"] == "ok"
    assert results["train"]["resumed_from"].startswith(str(job / "checkpoints" / "step-"))
    mine, theirs = weights(job), weights(uninterrupted)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    logs = "".join(p.read_text() for p in sweep.glob(".submitit/*/*_log.*"))
    assert "Requeued job" in logs and f"stopped: {sig.name} at step" in logs


def test_a_full_disk_while_saving_leaves_no_half_written_folder_and_is_an_enospc(tmp_path, monkeypatch):
    """safetensors says "No space left on device" in a SafetensorError, torch.save in a RuntimeError: either is
    raised as OSError(ENOSPC) naming the checkpoint or adapter (run.py's one line), the temporary folder is gone,
    and the earlier checkpoint is kept."""
    import errno
    import shutil
    from collections import namedtuple

    from llm_adapters import files
    from llm_adapters.adapters import saving
    from llm_adapters.adapters.placement import Target
    from llm_adapters.training import checkpoint
    from tests.helpers.configs import build_model

    model, *_ = build_model(make_config())
    checkpoint.save(tmp_path, 5, model, {"step": 5})
    usage, room = namedtuple("usage", "total used free"), shutil.disk_usage
    monkeypatch.setattr(files.shutil, "disk_usage", lambda _: usage(1 << 30, 1 << 30, 4096))

    def full(*_args, **_kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(OSError, match="No space left on device") as error:
        checkpoint.save(tmp_path, 10, model, {"step": 10})
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "step-10")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-5"]
    monkeypatch.setattr(saving, "save_file", full)
    with pytest.raises(OSError, match="No space left on device") as error:
        saving.save(model, {"kind": "lora"}, "tiny", [Target("q_proj", 0, "x", False)], tmp_path / "adapter")
    assert error.value.filename == str(tmp_path / "adapter")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-5"]
    monkeypatch.setattr(files.shutil, "disk_usage", room)  # room on the disk: the error is the error
    with pytest.raises(RuntimeError, match="unexpected pos"):
        checkpoint.save(tmp_path, 10, model, {"step": 10})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-5"]
