"""torchrun with 2 CPU processes (gloo): one job directory, one results.json, and the same adapter weights as one
process with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.configs import ROOT

# Dropout off: two processes draw other dropout masks than one, everything else must match.
ARGS = [
    "logger=none",
    "adapter.dropout=0",
    "train.max_steps=8",
    "train.log_every=2",
    "dataset.train_size=128",
    "eval.max_samples=4",
    "eval.max_new_tokens=8",
    "train.resume=false",
]


def launch(*command: str) -> None:
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.slow  # a whole subprocess job or sweep: CI's second pass, not the quick suite
@pytest.mark.parametrize("micro", [8, 16], ids=["two micro-batches dealt out", "one micro-batch split"])
def test_two_processes_equal_one(tmp_path, micro):
    launch(
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "run.py",
        *ARGS,
        f"train.micro_batch_size={micro}",
        f"hydra.run.dir={tmp_path / 'ddp'}",
    )
    launch(sys.executable, "run.py", *ARGS, f"train.micro_batch_size={micro}", f"hydra.run.dir={tmp_path / 'single'}")
    ddp = json.loads((tmp_path / "ddp" / "results.json").read_text())
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    assert ddp["train"]["processes"] == 2 and single["train"]["processes"] == 1
    assert [s for s, _ in ddp["train"]["loss_history"]] == [1, 2, 4, 6, 8]  # the first step, then every 2nd
    for (_, a), (_, b) in zip(ddp["train"]["loss_history"], single["train"]["loss_history"], strict=True):
        assert abs(a - b) < 1e-5
    mine = load_file(tmp_path / "ddp" / "adapter" / "adapter_model.safetensors")
    theirs = load_file(tmp_path / "single" / "adapter" / "adapter_model.safetensors")
    assert mine.keys() == theirs.keys()
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], atol=1e-6, rtol=1e-5)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("results.json")) == [
        "ddp/results.json",
        "single/results.json",
    ]
