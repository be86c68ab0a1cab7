"""Run one WASI program under the reference wasmtime CLI and under Donjon, the same way.

Conventions are the official WASI testsuite's: the module path, then its
arguments; ``--env`` only for the variables given; one preopen ``ROOT::/``.
Each runtime gets its own fresh copy of the fixture tree, so effects on files
can be compared too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from donjon import toolchain

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = REPO / "tests" / "programs"
C_HEADER = PROGRAMS / "c" / "wasitest.h"

SECRET = b"SECRET outside the sandbox\n"


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    tree: dict[str, str]  # relative path -> "file:<sha256>", "dir" or "link:<target>"

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def failures(self) -> list[str]:
        return [line for line in self.text().splitlines() if line.startswith("FAIL")]


@dataclass(frozen=True)
class Case:
    """One program run: what to pass it and what it must do under both runtimes."""

    program: str  # path under tests/programs
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes = b""
    exit_code: int = 0
    compare_tree: bool = True
    #: stdout must match the reference byte for byte (off for programs that print timings)
    compare_stdout: bool = True
    timeout: float = 60.0

    @property
    def id(self) -> str:
        return Path(self.program).stem + ("-" + "-".join(self.args) if self.args else "")


def build(src: Path) -> Path:
    """Build a test program, skipping when its toolchain is missing."""
    try:
        if src.suffix == ".c":
            # The shared header is not part of the toolchain's cache key: add its digest.
            digest = hashlib.sha256(C_HEADER.read_bytes()).hexdigest()[:16]
            return toolchain.build_c(src, flags=[f"-DWASITEST_H_DIGEST={digest}"])
        return toolchain.build(src)
    except toolchain.ToolchainMissing as exc:
        pytest.skip(str(exc))


def donjon_available() -> bool:
    return importlib.util.find_spec("donjon.cli.run_wasm") is not None


def require_donjon() -> None:
    if not donjon_available():
        pytest.skip("donjon run-wasm is not implemented yet (no donjon.cli.run_wasm)")


def make_tree(base: Path) -> Path:
    """The fixture every program sees at ``/``; ``base/outside`` is what must stay unreachable."""
    root = base / "root"
    outside = base / "outside"
    (root / "sub").mkdir(parents=True)
    (root / "empty_dir").mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (root / "hello.txt").write_bytes(b"hello world\n")
    (root / "sub" / "a.txt").write_bytes(b"a\n")
    (root / "sub" / "b.txt").write_bytes(b"bb\n")
    (root / "sub" / "inner").mkdir()
    (root / "sub" / "inner" / "c.txt").write_bytes(b"ccc\n")
    links = {
        "link_in": "hello.txt",
        "link_dir": "sub",
        "link_abs_out": str(outside / "secret.txt"),
        "link_up_out": "../outside/secret.txt",
        "link_dir_out": "../outside",
        "link_abs_in": str(root / "hello.txt"),  # absolute, though it names a file inside
        "link_parent": "..",
        "link_deep": "sub/inner",
        "chain1": "chain2",
        "chain2": "sub/../link_up_out",
        "chain_in1": "chain_in2",
        "chain_in2": "sub/a.txt",
        "loop1": "loop2",
        "loop2": "loop1",
        "self_loop": "self_loop",
        "dangling": "does/not/exist",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    return root


def snapshot(base: Path) -> dict[str, str]:
    """A comparable picture of root/ and outside/, without timestamps."""
    picture: dict[str, str] = {}
    for dirpath, dirnames, filenames in [
        w for top in ("root", "outside") for w in os.walk(base / top)
    ]:
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(base))
            if path.is_symlink():
                picture[rel] = "link:" + os.readlink(path).replace(str(base), "$BASE")
            elif path.is_dir():
                picture[rel] = "dir"
            else:
                picture[rel] = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return picture


def wasmtime_cmd(wasm: Path, root: Path, case: Case) -> list[str]:
    cmd = [str(toolchain.wasmtime_cli()), "run", "--dir", f"{root}::/"]
    for key, value in case.env.items():
        cmd += ["--env", f"{key}={value}"]
    return [*cmd, str(wasm), *case.args]


def donjon_cmd(wasm: Path, root: Path, case: Case) -> list[str]:
    cmd = [sys.executable, "-m", "donjon.cli.main", "run-wasm", "--dir", f"{root}::/"]
    for key, value in case.env.items():
        cmd += ["--env", f"{key}={value}"]
    return [*cmd, str(wasm), *case.args]


def run(runtime: str, wasm: Path, base: Path, case: Case) -> Outcome:
    root = make_tree(base)
    make = wasmtime_cmd if runtime == "wasmtime" else donjon_cmd
    # HOME stays: both runtimes keep their compiled-module caches there, which keeps runs fast.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for key in ("HOME", "XDG_CACHE_HOME", "DONJON_BUILD_CACHE", "TMPDIR", "PYTHONPATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    proc = subprocess.run(
        make(wasm, root, case),
        input=case.stdin,
        capture_output=True,
        timeout=case.timeout,
        cwd=base,
        env=env,
        check=False,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, snapshot(base))


def describe(outcome: Outcome) -> str:
    err = outcome.stderr.decode("utf-8", "replace").strip().splitlines()
    return f"exit {outcome.exit_code}; stderr: {err[-1] if err else ''}"


def first_diff(ref: Outcome, got: Outcome, context: int = 3) -> str:
    """Where Donjon's stdout first departs from wasmtime's, and how Donjon ended."""
    a, b = ref.text().splitlines(), got.text().splitlines()
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(0, i - context)
    show = [f"stdout differs at line {i + 1}:"]
    show += [f"  wasmtime: {line}" for line in a[lo : i + context]]
    show += [f"  donjon:   {line}" for line in b[lo : i + context]]
    return "\n".join([*show, f"donjon: {describe(got)}"])


def check_self(name: str, outcome: Outcome, case: Case) -> None:
    """The program's own, hand-written expectations."""
    assert not outcome.failures(), f"{name}: program checks failed: {outcome.failures()}"
    assert outcome.exit_code == case.exit_code, f"{name}: {describe(outcome)}"


def run_fresh(runtime: str, wasm: Path, tmp_path: Path, case: Case) -> Outcome:
    base = tmp_path / runtime
    base.mkdir()
    return run(runtime, wasm, base, case)


def differential(case: Case, tmp_path: Path) -> dict[str, Outcome]:
    """Run ``case`` under wasmtime and check it against itself, then the same for Donjon,
    then Donjon against wasmtime. Skips the Donjon half while ``run-wasm`` does not exist."""
    wasm = build(PROGRAMS / case.program)
    ref = run_fresh("wasmtime", wasm, tmp_path, case)
    check_self("wasmtime", ref, case)
    require_donjon()
    got = run_fresh("donjon", wasm, tmp_path, case)
    if case.compare_stdout:
        assert got.text().splitlines() == ref.text().splitlines(), first_diff(ref, got)
    check_self("donjon", got, case)
    assert got.exit_code == ref.exit_code
    if case.compare_tree:
        assert got.tree == ref.tree, "the file tree after the run differs from wasmtime's"
    return {"wasmtime": ref, "donjon": got}
