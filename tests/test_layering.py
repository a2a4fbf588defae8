"""The imports go one way, as README says: ``micrograd -> models -> training``, and ``app.py``
uses ``models`` only. Read from the source (AST), so an import added anywhere, even inside a
function, is caught."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What each part of the project may import from the project itself.
ALLOWED = {
    "micrograd": {"micrograd"},
    "models": {"micrograd", "models"},
    "training": {"micrograd", "models", "training"},
    "app.py": {"models"},
}
PROJECT = {"micrograd", "models", "training", "app", "benchmarks", "tests", "examples"}


def project_imports(path: Path, packages: set[str] = PROJECT) -> set[str]:
    """The top-level packages among ``packages`` that ``path`` imports (absolute imports)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & packages
    return found


def files(part: str) -> list[Path]:
    return [ROOT / part] if part.endswith(".py") else sorted((ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("part", ALLOWED)
def test_imports_follow_the_layering(part: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(project_imports(path) - ALLOWED[part])
        for path in files(part)
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_check_sees_imports_inside_functions(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from training.data import x\n    import app\n")
    assert project_imports(path) == {"training", "app"}


def test_only_the_cluster_module_imports_ray() -> None:
    """Ray is an optional extra for batch jobs: serving (app.py, models, micrograd) and the
    rest of training must run without it."""
    importers = {
        str(path.relative_to(ROOT))
        for part in ALLOWED
        for path in files(part)
        if project_imports(path, {"ray"})
    }
    assert importers == {"training/cluster.py"}
