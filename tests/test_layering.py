"""The import arrows of the architecture: ground -> plug-ins -> orchestration, never back up.

A target owns its store, so no harness, nemesis or checker module names one, and a target package
imports nothing from the harness (a node image ships it alone). Read from the source with ``ast``
(imports under ``if TYPE_CHECKING:`` included: an annotation that names a store is a dependency too).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(path: Path) -> set[str]:
    """Every module a file imports (absolute names)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def offenders(packages: tuple[str, ...], forbidden: str) -> list[str]:
    found = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            bad = sorted(m for m in imports_of(path) if m == forbidden or m.startswith(forbidden + "."))
            if bad:
                found.append(f"{path.relative_to(ROOT)}: {', '.join(bad)}")
    return found


@pytest.mark.parametrize("store", ["targets.dynamo", "targets.etcd"])
def test_no_harness_nemesis_or_checker_module_names_a_store(store: str) -> None:
    assert offenders(("harness", "nemeses", "checkers"), store) == []


@pytest.mark.parametrize("package", ["targets"])
@pytest.mark.parametrize("upper", ["harness", "nemeses", "checkers"])
def test_targets_import_nothing_above_them(package: str, upper: str) -> None:
    assert offenders((package,), upper) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("from targets.dynamo.target import DynamoTarget\nimport harness.errors\n")
    assert imports_of(tmp_path / "m.py") >= {"targets.dynamo.target", "harness.errors"}
