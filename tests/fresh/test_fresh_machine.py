"""The README's two commands on a machine like a new user's: a clean clone, a system
Python that is "externally managed" (PEP 668: Debian 12, Ubuntu 24.04, Fedora,
Homebrew), and pip told to refuse anything outside a virtual environment.

Both scripts must create and use ``.venv``, say what they do, skip pip when nothing
changed, and leave ``.venv/bin/donjon`` working. Packages come from the pip cache of
this machine when it has them (the network is the only thing not made fresh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
#: Where distributions put their system Python.
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3", "/opt/homebrew/bin/python3")
TIMEOUT_S = 900


def externally_managed_python() -> Path | None:
    """A Python 3.11+ marked EXTERNALLY-MANAGED that can create virtual environments."""
    probe = (
        "import sys, sysconfig, pathlib, importlib.util as u; "
        "ok = sys.version_info >= (3, 11) and sys.prefix == sys.base_prefix "
        "and (pathlib.Path(sysconfig.get_path('stdlib')) / 'EXTERNALLY-MANAGED').is_file() "
        "and u.find_spec('ensurepip') is not None; sys.exit(0 if ok else 1)"
    )
    for candidate in SYSTEM_PYTHONS:
        if Path(candidate).is_file():
            proc = subprocess.run([candidate, "-c", probe], capture_output=True, check=False)
            if proc.returncode == 0:
                return Path(candidate)
    return None


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    python = externally_managed_python()
    if python is None:
        pytest.skip(
            "no externally managed Python 3.11+ with venv here (Debian: python3 python3-venv)"
        )
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout to clone")
    root = tmp_path_factory.mktemp("fresh")
    clone = root / "donjon"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(python)
    system_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "PYENV", "VIRTUAL_ENV", "DONJON_", "PIP_"))
    }
    env.update(PATH=f"{bin_dir}:{system_path}", PIP_REQUIRE_VIRTUALENV="1")
    try:
        yield clone, env
    finally:
        shutil.rmtree(root, ignore_errors=True)  # a .venv with ziglang is ~300 MB


def run(clone: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=clone, env=env, capture_output=True, text=True,
        timeout=TIMEOUT_S, check=False,
    )  # fmt: skip


def test_the_marked_python_refuses_pip(machine: tuple[Path, dict[str, str]]) -> None:
    """The premise: outside a virtual environment, pip says no here."""
    clone, env = machine
    proc = run(clone, env, "python3", "-m", "pip", "install", "--dry-run", "click")
    assert proc.returncode != 0
    assert "externally-managed-environment" in proc.stderr or "virtualenv" in proc.stderr


def test_test_then_demo_on_a_fresh_machine(machine: tuple[Path, dict[str, str]]) -> None:
    """scripts/test first (it makes .venv), then the demo, which reuses it: no pip run."""
    clone, env = machine
    tests = run(clone, env, "./scripts/test", "tests/test_cli_foundation.py", "-q")
    said = tests.stdout + tests.stderr
    assert tests.returncode == 0, said[-3000:]
    assert "scripts/test: creating .venv (Python 3." in tests.stderr
    assert "scripts/test: installing Donjon[dev] into .venv (first run, about a minute)" in said
    assert " passed" in tests.stdout
    assert (clone / ".venv" / "bin" / "python").exists()

    # Once: the demo after scripts/test is already a second run on this .venv (a third
    # proved nothing more and cost CI about 40 s).
    demo = run(clone, env, "./scripts/demo")
    assert demo.returncode == 0, (demo.stdout + demo.stderr)[-3000:]
    assert "scripts/demo:" not in demo.stderr  # .venv is reused, pip is not run
    assert "✔ fetch the page as a relying party" in demo.stdout

    # The README: afterwards the command is .venv/bin/donjon.
    version = run(clone, env, ".venv/bin/donjon", "--version")
    assert version.returncode == 0 and version.stdout.startswith("donjon, version ")


def test_no_python_3_11_is_one_clear_line(tmp_path: Path) -> None:
    """Where no Python 3.11+ is on PATH, the script says so and what to install."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "cat", "rm"):  # what the script needs, and no Python
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    old = bin_dir / "python3"
    old.write_text("#!/bin/sh\nexit 1\n")  # a python3 that fails the version check
    old.chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "DONJON_VENV": str(tmp_path / "venv")}
    proc = subprocess.run(
        [str(REPO / "scripts" / "demo")], env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("scripts/demo: error: Donjon needs Python 3.11 or newer, and none is on PATH")
    )
    assert not (tmp_path / "venv").exists()
