"""scripts/build-examples: lists and builds the examples, and says what it cannot build."""

from __future__ import annotations

import subprocess
import sys

from example_helpers import EXAMPLES, REPO

SCRIPT = REPO / "scripts" / "build-examples"
OURS = {
    "hello": "C",
    "fibonacci-c": "C",
    "fibonacci-cpp": "C++",
    "fibonacci-rust": "Rust",
    "fibonacci-zig": "Zig",
    "fibonacci-assemblyscript": "AssemblyScript",
    "http": "C",
    "chat": "C",
    "tls-client": "C",
    "secret-http": "C",
}


def script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_list_names_every_example_and_its_language() -> None:
    proc = script("--list")
    assert proc.returncode == 0, proc.stderr
    listed = dict(line.split() for line in proc.stdout.splitlines())
    for name, language in OURS.items():
        assert listed.get(name) == language
        config = [p.name for p in (EXAMPLES / name).iterdir() if p.suffix == ".toml"]
        assert len(config) == 1, f"examples/{name} needs one Enarx.toml or Donjon.toml"
        assert (EXAMPLES / name / "README.md").is_file(), f"examples/{name} has no README.md"


def test_builds_into_the_example_directory() -> None:
    proc = script("hello")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[1/1] hello (C) ... ok" in proc.stdout
    assert (EXAMPLES / "hello" / "main.wasm").read_bytes()[:8] == b"\0asm\x01\0\0\0"


def test_unknown_example_is_a_usage_error() -> None:
    proc = script("no-such-example")
    assert proc.returncode == 2
    assert proc.stderr.startswith("build-examples: unknown example no-such-example; known: ")
