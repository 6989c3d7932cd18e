"""The package's layers hold: each layer is a folder whose allowed imports the table below states, checked over every
import (at module level and inside functions); no import cycle between modules at any level; the light commands
(the rescoring CLI, plan mode, the analysis of results) never import W&B. How long a function or module may be is
ruff's business (``C901``, ``PLR0912``, ``PLR0913``, ``PLR0915`` in pyproject.toml), not a line count."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.configs import ROOT

PACKAGE = ROOT / "llm_adapters"
MODULES = sorted(PACKAGE.rglob("*.py"))
FOUNDATION = ("errors", "files", "hub", "locks")  # the leaf helpers every layer may use, beside the package root

# Which layer may import which (itself always). Bottom to top: what a layer may not import is above it.
ALLOWED = {
    "foundation": set(),
    "stats": {"foundation"},
    "data": {"foundation"},
    "model": {"foundation", "data"},
    "adapters": {"foundation", "data", "model"},
    "training": {"foundation", "data", "model", "adapters"},
    "evaluation": {"foundation", "stats", "data", "model", "adapters"},
    "search": {"foundation"},
    "job": {"foundation", "stats", "data", "model", "adapters", "training", "evaluation", "search"},
    "rescore": {"foundation", "data", "evaluation"},  # the re-scoring command line
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(p): p for p in MODULES}


def layer(module: str) -> str:
    """The layer of a package module: its folder, or the foundation for the root and its leaf helpers."""
    top = module.removeprefix("llm_adapters").removeprefix(".").split(".")[0]
    return "foundation" if top in ("", *FOUNDATION) else top


def imports(path: Path) -> set[str]:
    """Every package module ``path`` imports, wherever the import statement is (a function-level import counts)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llm_adapters"):
            named = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= {n for n in named if n in NAMES} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("llm_adapters")}
    return {m for m in found if m in NAMES}


def test_every_layer_is_a_folder_of_the_table():
    """A module outside the table's folders would be a layer nobody placed."""
    assert {layer(m) for m in NAMES} == set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_only_the_layers_below_it(path):
    mine = layer(module_name(path))
    wrong = sorted(m for m in imports(path) if layer(m) != mine and layer(m) not in ALLOWED[mine])
    assert not wrong, f"{mine} may import {sorted(ALLOWED[mine])}, not {wrong}"


def test_no_import_cycle_at_any_level():
    """Between modules, counting imports inside functions; a module's own package (its ``__init__``, which Python
    runs first) is not an edge."""
    graph = {
        name: {m for m in imports(path) if m != name and not name.startswith(m + ".")} for name, path in NAMES.items()
    }
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            assert state.get(dep) != "open", f"import cycle: {' -> '.join([*trail, name, dep])}"
            if dep not in state:
                visit(dep, [*trail, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_layer_checks_see_an_import_inside_a_function(tmp_path):
    """The checks above would miss ``pruning`` ↔ ``search`` had they read module-level imports only."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from llm_adapters.job import recipe\n    return recipe\n")
    assert imports(module) == {"llm_adapters.job.recipe"}


@pytest.mark.parametrize("module", ["llm_adapters.rescore", "llm_adapters.job.plan", "analysis.collect"])
def test_light_commands_do_not_import_wandb(module):
    code = f"import sys, {module}; print('wandb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_one_error_taxonomy_for_bad_input():
    """Every bad-input error is an InputError (run.py's one line and exit 2), each kind its own class; none of the
    modules defines a ValueError of its own beside them."""
    from llm_adapters import errors

    kinds = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.InputError)]
    assert {k.__name__ for k in kinds} >= {"ConfigError", "DataError", "PlacementError", "AdapterFileError"}
    own = [
        f"{path.name}:{node.name}"
        for path in MODULES
        if path.name != "errors.py"
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "ValueError" for b in node.bases)
    ]
    assert not own
