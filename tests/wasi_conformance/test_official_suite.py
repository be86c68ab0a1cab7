"""The official WASI test suite (WebAssembly/wasi-testsuite, preview 1) against Donjon.

An independent check of the WASI host: the suite's own programs and JSON
specifications, run under ``donjon run-wasm`` and, side by side, under the
reference wasmtime CLI. The suite is other people's code and is never
committed: build it outside the repository (docs/wasi.md says how) and point
``WASI_TESTSUITE_DIR`` at it. Without that variable every test here skips.

The runner follows the suite's conventions (doc/specification.md there):
each ``NAME.wasm`` may have a ``NAME.json`` with ``args``, ``env`` (the guest
sees only these), ``dirs`` (preopened under their own name, the working
directory being the suite folder), ``root`` (a folder preopened as ``/``),
``exit_code`` (default 0) and ``stdout``/``stderr`` (compared when given).
Each run gets a fresh copy of the suite folder's fixtures, so a test that
fails half-way cannot change the next one's inputs.

A summary for both runtimes (``WASI_TESTSUITE_ERRNO_MODE=unix`` for the strict errnos)::

    export WASI_TESTSUITE_DIR=/tmp/wasi-testsuite/built
    python tests/wasi_conformance/test_official_suite.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ENV_VAR = "WASI_TESTSUITE_DIR"
#: ``unix`` (or ``macos``/``windows``): the Rust tests then want that platform's errno,
#: not any of the ones the suite allows (ERRNO_MODE_*, given to the ``rust`` suite only)
ERRNO_MODE_VAR = "WASI_TESTSUITE_ERRNO_MODE"
ERRNO_MODES = ("permissive", "unix", "macos", "windows")
TIMEOUT_S = 120.0
#: the reference's own failures (wasmtime 49), by test name: xfail there, never for Donjon
WASMTIME_KNOWN_FAILURES = {
    "remove_directory_trailing_slashes": 'wasmtime answers EINVAL to rmdir("dir/")',
}
KNOWN_KEYS = frozenset({"args", "dirs", "root", "env", "exit_code", "stdout", "stderr"})


class SpecError(ValueError):
    """A test's JSON uses something this runner does not implement: never ignored silently."""


@dataclass(frozen=True)
class Spec:
    args: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    root: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    exit_code: int = 0
    stdout: str | None = None
    stderr: str | None = None

    @classmethod
    def load(cls, path: Path) -> Spec:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise SpecError(f"{path}: not a JSON object")
        unknown = set(data) - KNOWN_KEYS
        if unknown:
            raise SpecError(f"{path}: unknown field(s) {sorted(unknown)}")
        env = data.get("env", {})
        return cls(
            args=tuple(str(a) for a in data.get("args", [])),
            dirs=tuple(str(d) for d in data.get("dirs", [])),
            root=data.get("root"),
            env=tuple((str(k), str(v)) for k, v in env.items()),
            exit_code=int(data.get("exit_code", 0)),
            stdout=data.get("stdout"),
            stderr=data.get("stderr"),
        )


@dataclass(frozen=True)
class Case:
    suite: str
    name: str
    wasm: Path
    spec: Spec

    @property
    def id(self) -> str:
        return f"{self.suite}/{self.name}"


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str
    failures: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    def why(self) -> str:
        tail = self.stderr.strip().splitlines()[-3:]
        return "; ".join(self.failures) + (f" | stderr: {' / '.join(tail)}" if tail else "")


def skipped_folder(part: str) -> bool:
    """Fixture trees, and suites for other targets (upstream keeps wasm32-wasip3 next door)."""
    return part.endswith(".dir") or (part.startswith("wasm32-wasip") and part != "wasm32-wasip1")


def discover(root: Path) -> list[Case]:
    """Every ``*.wasm`` under ``root`` (fixtures, other targets excepted), with its spec."""
    cases = []
    for wasm in sorted(root.rglob("*.wasm")):
        if any(skipped_folder(part) for part in wasm.relative_to(root).parts[:-1]):
            continue
        suite = wasm.parent.relative_to(root).as_posix() or "."
        cases.append(Case(suite, wasm.stem, wasm, Spec.load(wasm.with_suffix(".json"))))
    return cases


def wasmtime_argv() -> list[str]:
    from donjon import toolchain

    return [str(toolchain.wasmtime_cli()), "run"]


def donjon_argv() -> list[str]:
    return [sys.executable, "-m", "donjon.cli.main", "run-wasm"]


RUNTIMES: dict[str, Callable[[], list[str]]] = {"wasmtime": wasmtime_argv, "donjon": donjon_argv}


def stage(case: Case, work: Path) -> None:
    """A fresh copy of the suite folder's fixtures (everything but modules and specs)."""
    work.mkdir(parents=True)
    for entry in case.wasm.parent.iterdir():
        if entry.suffix in (".wasm", ".json"):
            continue
        target = work / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True)
        else:
            shutil.copy2(entry, target, follow_symlinks=False)


def errno_mode() -> str:
    mode = os.environ.get(ERRNO_MODE_VAR, "permissive").lower()
    if mode not in ERRNO_MODES:
        raise SpecError(f"{ERRNO_MODE_VAR}={mode!r}: expected one of {', '.join(ERRNO_MODES)}")
    return mode


def command(runtime: list[str], case: Case, work: Path) -> list[str]:
    argv = list(runtime)
    env = list(case.spec.env)
    mode = errno_mode()
    # only the Rust tests' helper crate reads it; others count their variables
    if mode != "permissive" and "rust" in case.suite.split("/"):
        env.append((f"ERRNO_MODE_{mode.upper()}", "1"))
    for key, value in env:
        argv += ["--env", f"{key}={value}"]
    if case.spec.root is not None:
        argv += ["--dir", f"{work / case.spec.root}::/"]
    for name in case.spec.dirs:
        argv += ["--dir", name]
    return [*argv, str(case.wasm), *case.spec.args]


def run_case(runtime: str, case: Case, work: Path) -> Result:
    stage(case, work)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for key in ("HOME", "XDG_CACHE_HOME", "DONJON_CACHE_DIR", "TMPDIR", "PYTHONPATH"):
        if key in os.environ:
            env[key] = os.environ[key]
    try:
        proc = subprocess.run(
            command(RUNTIMES[runtime](), case, work),
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Result(-1, "", "", (f"no exit within {TIMEOUT_S:.0f} s",))
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    failures = []
    if proc.returncode != case.spec.exit_code:
        failures.append(f"exit {proc.returncode}, expected {case.spec.exit_code}")
    if case.spec.stdout is not None and out != case.spec.stdout:
        failures.append(f"stdout {out[:200]!r}, expected {case.spec.stdout[:200]!r}")
    if case.spec.stderr is not None and err != case.spec.stderr:
        failures.append(f"stderr {err[:200]!r}, expected {case.spec.stderr[:200]!r}")
    return Result(proc.returncode, out, err, tuple(failures))


def suite_root() -> Path | None:
    value = os.environ.get(ENV_VAR)
    return Path(value) if value else None


def collect() -> list[Case]:
    root = suite_root()
    return discover(root) if root is not None and root.is_dir() else []


CASES = collect()


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
@pytest.mark.parametrize("case", CASES or [None], ids=[c.id for c in CASES] or ["no-suite"])
def test_official_suite(
    case: Case | None, runtime: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root = suite_root()
    if case is None:
        if root is None:
            pytest.skip(f"{ENV_VAR} is not set: build WebAssembly/wasi-testsuite (docs/wasi.md)")
        pytest.skip(f"{ENV_VAR}={root}: no *.wasm found there")
    if runtime == "wasmtime":
        from donjon import toolchain

        try:
            toolchain.wasmtime_cli()
        except toolchain.ToolchainMissing as exc:
            pytest.skip(str(exc))
        if case.name in WASMTIME_KNOWN_FAILURES:
            reason = WASMTIME_KNOWN_FAILURES[case.name]
            request.applymarker(pytest.mark.xfail(reason=reason, strict=False))
    result = run_case(runtime, case, tmp_path / runtime)
    assert result.passed, f"{runtime} {case.id}: {result.why()}"


def test_spec_rejects_unknown_fields(tmp_path: Path) -> None:
    """A spec feature this runner lacks must fail loudly, not pass by being ignored."""
    spec = tmp_path / "t.json"
    spec.write_text('{"args": ["a"], "operations": []}')
    with pytest.raises(SpecError, match="operations"):
        Spec.load(spec)


def test_discovery_skips_fixtures_and_other_targets(tmp_path: Path) -> None:
    for rel in (
        "c/wasm32-wasip1/a.wasm",
        "c/wasm32-wasip1/fs-tests.dir/b.wasm",
        "rust/wasm32-wasip3/c.wasm",
        "as/d.wasm",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [c.id for c in discover(tmp_path)] == ["as/d", "c/wasm32-wasip1/a"]


def test_errno_mode_adds_the_suite_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = Case("rust", "t", tmp_path / "t.wasm", Spec(env=(("A", "1"),)))
    monkeypatch.setenv(ERRNO_MODE_VAR, "unix")
    argv = command(["rt"], case, tmp_path)
    assert argv == ["rt", "--env", "A=1", "--env", "ERRNO_MODE_UNIX=1", str(tmp_path / "t.wasm")]
    other = Case("c", "t", tmp_path / "t.wasm", Spec(env=(("A", "1"),)))
    assert command(["rt"], other, tmp_path) == ["rt", "--env", "A=1", str(tmp_path / "t.wasm")]
    monkeypatch.setenv(ERRNO_MODE_VAR, "bsd")
    with pytest.raises(SpecError, match="bsd"):
        command(["rt"], case, tmp_path)


def test_spec_defaults_and_fields(tmp_path: Path) -> None:
    assert Spec.load(tmp_path / "missing.json") == Spec()
    spec = tmp_path / "t.json"
    spec.write_text('{"dirs": ["fs-tests.dir"], "env": {"A": "1"}, "exit_code": 3, "stdout": "x"}')
    expected = Spec(dirs=("fs-tests.dir",), env=(("A", "1"),), exit_code=3, stdout="x")
    assert Spec.load(spec) == expected


def main(argv: list[str]) -> int:
    """Print one line per test and runtime, then ``passed / total`` for each runtime."""
    import tempfile

    root = Path(argv[1]) if len(argv) > 1 else suite_root()
    if root is None or not root.is_dir():
        print(f"usage: {argv[0]} SUITE_DIR (or set {ENV_VAR})", file=sys.stderr)
        return 2
    cases = discover(root)
    print(f"{len(cases)} tests under {root}, errno mode {errno_mode()}", flush=True)
    passed = dict.fromkeys(RUNTIMES, 0)
    with tempfile.TemporaryDirectory(prefix="wasi-testsuite-") as tmp:
        for case in cases:
            cells = []
            for runtime in RUNTIMES:
                result = run_case(runtime, case, Path(tmp) / case.suite / case.name / runtime)
                passed[runtime] += result.passed
                cells.append(f"{runtime}={'pass' if result.passed else 'FAIL'}")
                if not result.passed:
                    cells.append(f"({result.why()})")
            print(f"{case.id:45} {' '.join(cells)}", flush=True)
    for runtime, count in passed.items():
        print(f"{runtime}: {count} passed / {len(cases)} total")
    return 0 if passed["donjon"] == len(cases) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
