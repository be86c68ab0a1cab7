"""DESIGN.md's import rules, enforced: each subpackage imports only the ones below it.

``cli`` may import ``keep`` and ``steward``; ``keep`` may import ``wasi`` and
``attestation``; ``steward`` may import ``attestation``; ``wasi`` and
``attestation`` import no other subpackage; nor does ``image`` (the container images'
build, which nothing at run time imports). Top-level modules (``donjon.errors``,
``donjon.atomicfile``, ``donjon.toolchain``) are shared by all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "donjon"
SUBPACKAGES = ("cli", "keep", "steward", "wasi", "attestation", "image")
ALLOWED: dict[str, set[str]] = {
    "cli": {"keep", "steward", "wasi", "attestation"},
    "keep": {"wasi", "attestation"},
    "steward": {"attestation"},
    "wasi": set(),
    "attestation": set(),
    "image": set(),
}


def imported_subpackages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "donjon" and parts[1] in SUBPACKAGES:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", SUBPACKAGES)
def test_subpackage_imports_follow_design(package: str) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files, f"no modules found under {SRC / package}"
    wrong = {
        f"{path.relative_to(SRC)} imports donjon.{other}"
        for path in files
        for other in imported_subpackages(path) - ALLOWED[package] - {package}
    }
    assert not wrong, sorted(wrong)


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("from donjon.steward import app\nimport donjon.keep.net\n")
    assert imported_subpackages(module) == {"steward", "keep"}
