"""deploy/Containerfile: non-root, no compiler in the final images, wheels only.

``podman build`` needs the base image from a container registry, which this
CI cannot reach, so the Containerfile is checked here instead: its final
stages' rules are read from the file, and the exact install step it runs
(``pip install --only-binary=:all: donjon[postgres,hsm]``) is run into a clean
virtual environment with the C compiler hidden, which proves that no package
needs one, and measures the environment the images copy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "deploy" / "Containerfile"
FINAL_STAGES = ("steward", "keep", "keep-http-example")
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|build-essential|make|rustc|cargo|zig)\b")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def stages() -> dict[str, Stage]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else f"#{len(found)}"
            current = found[name] = Stage(name, parts[0])
        elif current is not None:
            current.instructions.append((keyword, rest))
    return found


def _inherited(all_stages: dict[str, Stage], name: str) -> list[tuple[str, str]]:
    stage = all_stages[name]
    parent = all_stages.get(stage.base)
    return (_inherited(all_stages, parent.name) if parent else []) + stage.instructions


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_final_images_run_as_a_numeric_non_root_user(name: str) -> None:
    instructions = _inherited(stages(), name)
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, f"{name} sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]  # numeric: runAsNonRoot can verify it


@pytest.mark.parametrize("name", FINAL_STAGES)
def test_final_images_hold_no_compiler(name: str) -> None:
    all_stages = stages()
    for keyword, rest in _inherited(all_stages, name):
        if keyword == "RUN":
            assert "apt-get install" not in rest and not COMPILERS.search(rest), rest
        if keyword == "COPY" and rest.startswith("--from="):
            source = rest.split()[0].removeprefix("--from=")
            if source == "build-http":  # the compiler stage: only its output may come across
                assert rest.split()[1:-1] == [
                    "/src/examples/http/main.wasm",
                    "/src/examples/http/Enarx.toml",
                ]
            else:
                assert source in ("build-keep", "build-steward"), rest


def test_every_pip_install_takes_wheels_only() -> None:
    installs = [
        rest
        for stage in stages().values()
        for keyword, rest in stage.instructions
        if keyword == "RUN"
        for rest in re.split(r"&&", rest)
        if "pip install" in rest
    ]
    assert installs
    assert all("--only-binary=:all:" in i for i in installs), installs


@pytest.mark.slow
def test_the_image_requirements_install_without_a_compiler(tmp_path: Path) -> None:
    """What the build stage does, into a clean venv: wheels only, with no C compiler on PATH."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(wheels), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("donjon-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bare = tmp_path / "bin"  # a PATH with python, and no cc/gcc/clang
    bare.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:{bare}",
        "HOME": str(tmp_path),
        "CC": "/nonexistent/cc",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    for name in ("http_proxy", "https_proxy", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        if name in os.environ:
            env[name] = os.environ[name]
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--only-binary=:all:",
         f"{wheel}[postgres,hsm]"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    check = subprocess.run(
        [str(venv / "bin" / "donjon"), "steward", "db", "--help"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    imports = "import pkcs11, psycopg, alembic, wasmtime, cryptography, uvicorn"
    probe = subprocess.run(
        [str(venv / "bin" / "python"), "-c", imports],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
