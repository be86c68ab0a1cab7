"""Edge cases below the libc: bad enums, bad guest pointers, proc_raise, bad modules.

wasmtime traps on an out-of-range enum or flag bit and on a guest pointer outside
memory. Preview1 does not say which of "trap" or "errno" is right, so Donjon may
do either, with the errno the spec names (INVAL for values, FAULT for pointers);
what it must never do is succeed, or crash the host.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from wasi_harness import (
    PROGRAMS,
    Case,
    Outcome,
    build,
    make_tree,
    require_donjon,
    run_fresh,
    snapshot,
    wasmtime_cmd,
)

INVAL, FAULT, ILSEQ, NOMEM, NOSYS, NOTSUP, OVERFLOW, NOTCAPABLE = 28, 21, 25, 48, 52, 58, 61, 76
TRAP = "trap"

#: selector -> (what wasmtime 49 does, what Donjon may do)
EDGES: dict[str, tuple[str | int, set[str | int]]] = {
    "c": (TRAP, {TRAP, INVAL}),  # clock_time_get, clock id 7
    "w": (TRAP, {TRAP, INVAL}),  # fd_seek, whence 9
    "a": (TRAP, {TRAP, INVAL}),  # fd_advise, advice 200
    "o": (TRAP, {TRAP, INVAL}),  # path_open, unknown oflags bit
    "r": (TRAP, {TRAP, INVAL, NOTCAPABLE}),  # path_open, unknown rights bits
    "f": (TRAP, {TRAP, INVAL}),  # fd_fdstat_set_flags, unknown bit
    "i": (TRAP, {TRAP, FAULT}),  # iovec array out of bounds
    "b": (TRAP, {TRAP, FAULT}),  # iovec buffer out of bounds
    "p": (TRAP, {TRAP, FAULT}),  # random_get past the end
    "t": (TRAP, {TRAP, FAULT}),  # result pointer out of bounds
    "u": (TRAP, {TRAP, FAULT, INVAL}),  # unaligned u64 result pointer
    "n": (TRAP, {TRAP, FAULT}),  # path out of bounds
    "x": (TRAP, {TRAP, FAULT}),  # fd_read into memory past the end
    "g": (TRAP, {TRAP, FAULT}),  # args_get pointers out of bounds
    "l": (NOMEM, {TRAP, NOMEM, FAULT, INVAL, OVERFLOW}),  # 2^29 iovecs
    "e": (NOTSUP, {NOTSUP, NOSYS}),  # proc_raise(SIGABRT)
    "s": (ILSEQ, {ILSEQ, INVAL}),  # path that is not UTF-8
}


def classify(selector: str, outcome: Outcome) -> str | int:
    """``trap``, or the errno the call returned; anything else fails the test."""
    lines = outcome.text().splitlines()
    assert lines[:1] == [f"before {selector}"], f"unexpected output {lines!r}"
    if len(lines) == 1:
        assert outcome.exit_code != 0, "the program stopped without trapping or exiting non-zero"
        err = outcome.stderr.decode("utf-8", "replace")
        assert "Traceback" not in err, f"the host crashed:\n{err}"
        return TRAP
    assert len(lines) == 2 and lines[1].startswith("returned "), f"unexpected output {lines!r}"
    assert outcome.exit_code == 0
    return int(lines[1].split()[1])


@pytest.mark.parametrize("selector", sorted(EDGES))
def test_edge_call(selector: str, tmp_path: Path) -> None:
    reference, allowed = EDGES[selector]
    case = Case("wat/edge_calls.wat", args=(selector,), compare_tree=False)
    wasm = build(PROGRAMS / case.program)
    assert classify(selector, run_fresh("wasmtime", wasm, tmp_path, case)) == reference
    require_donjon()
    got = classify(selector, run_fresh("donjon", wasm, tmp_path, case))
    assert got in allowed, f"donjon: {got!r}; allowed {sorted(map(str, allowed))}"


def test_edge_without_selector(tmp_path: Path) -> None:
    case = Case("wat/edge_calls.wat", compare_tree=False)
    wasm = build(PROGRAMS / case.program)
    for runtime in ("wasmtime", "donjon"):
        if runtime == "donjon":
            require_donjon()
        outcome = run_fresh(runtime, wasm, tmp_path, case)
        assert (outcome.exit_code, outcome.text()) == (0, "no selector\n"), runtime


@pytest.mark.parametrize("runtime", ["wasmtime", "donjon"])
def test_stdout_reader_gone(runtime: str, tmp_path: Path) -> None:
    """fd_write to a closed pipe is an errno for the guest, never a host crash.

    POSIX says PIPE (64); wasmtime's preview2 streams answer IO (29)."""
    wasm = build(PROGRAMS / "c" / "epipe.c")
    if runtime == "donjon":
        require_donjon()
        cmd = [sys.executable, "-m", "donjon.cli.main", "run-wasm", str(wasm)]
    else:
        cmd = wasmtime_cmd(wasm, tmp_path, Case("c/epipe.c"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b"y" * 10
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 3, err
    assert err.startswith(("errno 64 after ", "errno 29 after ")), err
    assert "Traceback" not in err


@pytest.mark.parametrize("runtime", ["wasmtime", "donjon"])
def test_poll_on_an_idle_stdin_pipe(runtime: str, tmp_path: Path) -> None:
    wasm = build(PROGRAMS / "c" / "poll_stdin.c")
    if runtime == "donjon":
        require_donjon()
        cmd = [sys.executable, "-m", "donjon.cli.main", "run-wasm", str(wasm)]
    else:
        cmd = wasmtime_cmd(wasm, tmp_path, Case("c/poll_stdin.c"))
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    lines = []
    try:
        while (line := proc.stdout.readline().decode()) and line != "waiting\n":
            lines.append(line)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(lines) + out.decode()
    assert "FAIL" not in text, text
    assert proc.returncode == 0, err.decode()[-300:]
    assert text.rstrip().endswith("failures 0")


def test_read_only_preopen_changes_nothing(tmp_path: Path) -> None:
    """``--dir-ro`` (Donjon only; wasmtime has no such flag): every mutation is refused."""
    wasm = build(PROGRAMS / "c" / "readonly.c")
    require_donjon()
    root = make_tree(tmp_path)
    before = snapshot(tmp_path)
    mtime = (root / "hello.txt").stat().st_mtime_ns
    proc = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "run-wasm", "--dir-ro", f"{root}::/", str(wasm)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = proc.stdout.decode()
    assert [line for line in out.splitlines() if line.startswith("FAIL")] == []
    assert proc.returncode == 0, proc.stderr.decode()[-300:]
    assert snapshot(tmp_path) == before, "the read-only tree changed"
    assert (root / "hello.txt").stat().st_mtime_ns == mtime, "times changed"


BAD_MODULES = {
    "garbage": b"\x00asm\x01\x00\x00\x00\xff\xff",
    "not-wasm": b"#!/bin/sh\necho hi\n",
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(BAD_MODULES))
def test_malformed_module_is_a_one_line_error(name: str, tmp_path: Path) -> None:
    require_donjon()
    module = tmp_path / f"{name}.wasm"
    module.write_bytes(BAD_MODULES[name])
    proc = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "run-wasm", str(module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) >= 1 and lines[0].startswith("donjon: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(module.name) in lines[0], "the error should name the module"


def test_module_without_start_is_refused(tmp_path: Path) -> None:
    require_donjon()
    from wasmtime import wat2wasm

    module = tmp_path / "nostart.wasm"
    module.write_bytes(wat2wasm('(module (memory (export "memory") 1))'))
    proc = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "run-wasm", str(module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert proc.stderr.startswith("donjon: error:"), proc.stderr
    assert "_start" in proc.stderr
