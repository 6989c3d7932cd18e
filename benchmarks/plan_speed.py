"""Plan mode on a 7B config: seconds for the count itself (in process) and for the whole command (a fresh
``python run.py mode=plan model=llama-7b``, start-up and imports included).

    python -m benchmarks.plan_speed
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine
from llm_adapters import CONF_DIR
from llm_adapters.job.composition import compose
from llm_adapters.job.plan import plan

ROOT = CONF_DIR.parent


def main() -> None:
    cfg = compose("mode=plan", "model=llama-7b", "train=paper")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = plan(cfg, Path(tmp))
        in_process = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "run.py"), "mode=plan", "model=llama-7b", f"hydra.run.dir={tmp}/cli"],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        command = time.perf_counter() - start
    figures = {
        "plan_seconds": in_process,
        "plan_command_seconds": command,
        "trainable": result["params"]["trainable"],
        "total": result["params"]["total"],
        "machine": machine(),
    }
    print(f"plan on llama-7b: {in_process:.2f} s in process, {command:.2f} s as a command")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
