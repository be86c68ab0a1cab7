"""End to end: run(), exit codes, traps, limits, malformed modules, the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hostharness import PROGRAMS

from donjon.wasi import Limits, ModuleError, RunSpec, Stdio, StdioKind, run
from donjon.wasi.errors import MemoryLimitExceeded

EXIT_TRAP, EXIT_TIMEOUT, EXIT_MEMORY = 134, 124, 137
ETIMEDOUT = 73
Build = Callable[[Path], Path]


def donjon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "run-wasm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_trap_is_one_line_and_134(build_wasm: Build, tmp_path: Path) -> None:
    wasm = build_wasm(PROGRAMS / "divzero.wat")
    proc = donjon("--no-cache", str(wasm))
    assert proc.returncode == EXIT_TRAP
    assert proc.stderr == "donjon: trap: integer divide by zero in func foo\n"


def test_args_and_only_given_env(build_wasm: Build, tmp_path: Path) -> None:
    wasm = build_wasm(PROGRAMS / "hello.c")
    proc = donjon("--env", "A=1", "--env", "B=x=y", str(wasm), "one", "two words")
    assert proc.returncode == 3
    assert proc.stdout.splitlines() == [
        f"argv[0]={wasm.name}",
        "argv[1]=one",
        "argv[2]=two words",
        "env A=1",
        "env B=x=y",
    ]


def test_stdout_to_a_file(build_wasm: Build, tmp_path: Path) -> None:
    wasm = build_wasm(PROGRAMS / "hello.c")
    out = tmp_path / "out.txt"
    spec = RunSpec(module=wasm, args=["h"], stdout=Stdio(StdioKind.FILE, path=out), cache_dir=None)
    assert run(spec).exit_code == 1
    assert out.read_text() == "argv[0]=h\n"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"hello, not wasm", "not a WebAssembly module"),
        (b"\0asm\x01\0\0\0\x01\x05", "invalid WebAssembly module"),
    ],
)
def test_malformed_module_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(content)
    proc = donjon("--no-cache", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"donjon: error: {bad}: ")
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("program", "needle"),
    [("not_wasi.wat", "imports env::do_thing"), ("no_start.wat", "no exported _start")],
)
def test_non_wasi_module(build_wasm: Build, program: str, needle: str) -> None:
    wasm = build_wasm(PROGRAMS / program)
    with pytest.raises(ModuleError, match=needle):
        run(RunSpec(module=wasm, cache_dir=None))


def test_missing_module_is_a_usage_error(tmp_path: Path) -> None:
    proc = donjon(str(tmp_path / "nope.wasm"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"donjon: error: {tmp_path / 'nope.wasm'}: no such file"


def test_timeout_stops_a_cpu_loop(build_wasm: Build) -> None:
    wasm = build_wasm(PROGRAMS / "spin.wat")
    result = run(RunSpec(module=wasm, limits=Limits(timeout_s=0.3), cache_dir=None))
    assert result.exit_code == EXIT_TIMEOUT
    assert result.trap is not None and result.trap.startswith("timeout")


def test_timeout_stops_a_blocked_accept(build_wasm: Build) -> None:
    wasm = build_wasm(PROGRAMS / "accept.wat")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        spec = RunSpec(module=wasm, streams=[listener], limits=Limits(timeout_s=0.3))
        spec.cache_dir = None
        assert run(spec).exit_code == EXIT_TIMEOUT


def test_blocking_call_deadline_returns_etimedout(build_wasm: Build) -> None:
    wasm = build_wasm(PROGRAMS / "accept.wat")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        limits = Limits(blocking_call_timeout_s=0.2)
        spec = RunSpec(module=wasm, streams=[listener], limits=limits, cache_dir=None)
        assert run(spec).exit_code == ETIMEDOUT


def test_accept_succeeds_when_a_client_is_waiting(build_wasm: Build) -> None:
    wasm = build_wasm(PROGRAMS / "accept.wat")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        try:
            assert run(RunSpec(module=wasm, streams=[listener], cache_dir=None)).exit_code == 0
        finally:
            client.close()


def test_memory_limit_exit_code(build_wasm: Build) -> None:
    wasm = build_wasm(PROGRAMS / "grow.wat")
    limits = Limits(memory_bytes=8 << 20)
    result = run(RunSpec(module=wasm, limits=limits, cache_dir=None))
    assert result.exit_code == EXIT_MEMORY
    assert result.trap is not None and "memory limit" in result.trap


def test_memory_limit_via_cli(build_wasm: Build) -> None:
    wasm = build_wasm(PROGRAMS / "grow.wat")
    proc = donjon("--no-cache", "--memory", "4M", str(wasm))
    assert proc.returncode == EXIT_MEMORY
    assert proc.stderr.startswith("donjon: memory limit of 4194304 bytes reached")


def test_listen_gives_a_socket_after_the_dirs(build_wasm: Build, tmp_path: Path) -> None:
    """``--listen`` pre-opens the listener at the first fd after the directories (here 3)."""
    wasm = build_wasm(PROGRAMS / "accept.wat")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = donjon("--no-cache", "--call-timeout", "0.2", "--listen", f"127.0.0.1:{port}", str(wasm))
    assert proc.returncode == ETIMEDOUT, proc.stderr


def test_initial_memory_over_the_limit(build_wasm: Build) -> None:
    wasm = build_wasm(PROGRAMS / "big_memory.wat")
    with pytest.raises(MemoryLimitExceeded, match="needs more memory at start"):
        run(RunSpec(module=wasm, limits=Limits(memory_bytes=1 << 20), cache_dir=None))


@pytest.mark.parametrize(("arg", "code"), [("0", 0), ("7", 7), ("125", 125), ("126", 1), ("x", 1)])
def test_proc_exit_status(build_wasm: Build, arg: str, code: int) -> None:
    """Statuses 126 and up are refused as wasmtime refuses them: exit 1 and a message."""
    wasm = build_wasm(PROGRAMS / "exit_status.wat")
    result = run(RunSpec(module=wasm, args=["exit_status.wasm", arg], cache_dir=None))
    assert result.exit_code == code
    assert (result.trap is not None) == (code == 1)
