"""The package stays readable: small modules, short functions, no import cycle between its modules, and the light
commands (the rescoring CLI, the analysis of results) never import W&B."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.configs import ROOT

PACKAGE = ROOT / "llm_adapters"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 260, 60


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports at module level (what runs when it is imported)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llm_adapters"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("llm_adapters")}
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_are_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long


def test_no_import_cycle():
    names = {module_name(p): p for p in MODULES}
    graph = {name: {m for m in top_level_imports(path) if m in names and m != name} for name, path in names.items()}
    graph = {name: {m for m in deps if not name.startswith(m + ".")} for name, deps in graph.items()}  # its package
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for dep in graph[name]:
            assert state.get(dep) != "open", f"import cycle: {' -> '.join([*trail, name, dep])}"
            if dep not in state:
                visit(dep, [*trail, name])
        state[name] = "done"

    for name in graph:
        if name not in state:
            visit(name, [])


@pytest.mark.parametrize("module", ["llm_adapters.rescore", "llm_adapters.plan", "analysis.collect"])
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


def test_the_data_package_sits_below_models_adapters_and_evaluation():
    """``llm_adapters/data/`` (its docstring says so) imports, anywhere in its modules, only itself and the three
    leaf helpers: a data module that reached up to a model, an adapter or the config would tie the layers together."""
    allowed = ("llm_adapters.data", "llm_adapters.errors", "llm_adapters.files", "llm_adapters.hub")
    for path in sorted((PACKAGE / "data").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llm_adapters"):
                names = (
                    [node.module] if node.module != "llm_adapters" else [f"llm_adapters.{a.name}" for a in node.names]
                )
                assert all(n.startswith(allowed) for n in names), f"{path.name} imports {names}"
