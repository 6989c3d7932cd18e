"""The README's "Extending" claims, checked: a new adapter kind is its module and its YAML, nothing else, and a new
PEFT method is one YAML file. In a copy of the project, a throwaway kind is added as those two files alone (a PEFT
method not yet bridged, as its YAML alone); validation, plan mode, the adapter × placement × family matrix, the
registry tests and the PEFT bridge's proofs then cover it with no other file edited."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers.configs import ROOT

KIND_MODULE = '''"""A throwaway kind: a trainable shift added to each adapted projection's output."""

from __future__ import annotations

import torch
from torch import nn

from llm_adapters.adapters.registry import AdapterSpec, register
from llm_adapters.model.architectures import PROJECTION_SITES, features, linear_weight, target_dims


class Shifted(nn.Module):
    def __init__(self, base_layer: nn.Module, scale: float) -> None:
        super().__init__()
        self.base_layer, self.scale = base_layer, scale
        out = features(base_layer)[1]
        self.shift = nn.Parameter(torch.zeros(out, device=linear_weight(base_layer).device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) + self.scale * self.shift


def wrap(base_layer, site, cfg, rows=None):
    return Shifted(base_layer, float(cfg["scale"]))


register(
    AdapterSpec(
        "shift",
        wrap=wrap,
        sites=PROJECTION_SITES,
        presets={"attn": ("attn.q", "attn.v"), "mlp": ("mlp.down",), "both": ("attn.v", "mlp.down")}
        | {"best": ("mlp.down",)},
        keys={"scale": "positive"},
        count=lambda cfg, targets, config: sum(target_dims(config, t.site, t.sliced)[1] for t in targets),
    )
)
'''
TESTED = ["tests/test_matrix.py", "tests/test_registry.py"]
KIND_YAML = "kind: shift\nscale: 1.0   # how much of the learnt shift is added\n"

CHECKS = """
import json, llm_adapters
from pathlib import Path
from llm_adapters.job.composition import compose
from llm_adapters.job.config import ConfigError, validate
from llm_adapters.job.plan import plan
try:
    validate(compose("adapter=shift", "adapter.scale=0"))
    refused = None
except ConfigError as error:
    refused = str(error)
validate(compose("adapter=shift", "placement=both"))
counted = plan(compose("mode=plan", "adapter=shift", "model=llama-7b"), Path("plan-out"))["params"]["trainable"]
print(json.dumps({"package": llm_adapters.__file__, "refused": refused, "plan_trainable": counted}))
"""


def project_copy(tmp_path):
    copy = tmp_path / "project"
    for name in ("llm_adapters", "conf", "tests", "run.py", "pyproject.toml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy / name)
    return copy


def test_a_new_kind_is_its_module_and_its_yaml(tmp_path):
    copy = project_copy(tmp_path)
    (copy / "llm_adapters" / "adapters" / "shift.py").write_text(KIND_MODULE)
    (copy / "conf" / "adapter" / "shift.yaml").write_text(KIND_YAML)

    done = subprocess.run([sys.executable, "-c", CHECKS], cwd=copy, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(copy))  # the copy was imported, not the installed project
    assert found["refused"] == "adapter.scale must be a positive number (got 0)"
    assert found["plan_trainable"] == 32 * 4096  # LLaMA-7B, best = mlp.down: one shift of width 4096 per layer

    assert passed_in(copy, "shift", TESTED) >= 6 + 1  # the matrix on every family, and the record-against-build check


def passed_in(copy, selection: str, files) -> int:
    """How many of the copy's tests selected by ``-k selection`` in ``files`` passed (all must)."""
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", selection, *files],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert tests.returncode == 0 and "failed" not in tests.stdout, tests.stdout[-3000:]
    return int(re.search(r"(\d+) passed", tests.stdout).group(1))


PEFT_YAML = """# RandLoRA through PEFT: a bridge written as this one file.
kind: randlora
peft:
  method: RANDLORA
  size: r
r: 32
randlora_alpha: 640
randlora_dropout: 0.0
"""


@pytest.mark.slow  # a copy of the project and three test files' share of it, in a subprocess (about a minute)
def test_a_new_peft_method_is_one_yaml_file(tmp_path):
    copy = project_copy(tmp_path)
    (copy / "conf" / "adapter" / "randlora.yaml").write_text(PEFT_YAML)
    tested = [*TESTED, "tests/test_peft_bridge.py"]
    # the matrix on every family, the record's check, and PEFT's own modules, parameters, logits, counts, format
    assert passed_in(copy, "randlora", tested) >= 9 + 1 + 3 + 2
