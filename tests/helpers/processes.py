"""``run.py`` as a subprocess, in its own process group, so a test that times out leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers.configs import ROOT


class Job(subprocess.Popen):
    """A ``run.py`` process in its own process group: when ``communicate`` times out, the whole group (run.py and
    whatever it started) is killed before the timeout propagates, so a slow machine fails a test without leaving
    a job running behind it."""

    def communicate(self, input=None, timeout=None):
        try:
            return super().communicate(input, timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            super().communicate()
            raise


def run_py(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> Job:
    env = {**os.environ, "TQDM_DISABLE": "1", "HYDRA_FULL_ERROR": "1", **(env or {})}
    return Job(
        [sys.executable, str(ROOT / "run.py"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
