"""Durability fdflags (DSYNC, RSYNC, SYNC) given to path_open.

Found by the official WASI test suite (wasi-testsuite ``path_filestat``): Donjon
opened the host file with O_SYNC but ``fd_fdstat_get`` left the flag out, so a
guest could not tell its writes were synchronous. wasmtime 49 refuses the flags
(NOTSUP), which the suite also accepts; Donjon honours them and must say so.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hostharness import PROGRAMS

Build = Callable[[Path], Path]

# WASI preview1 values: fdflags APPEND=1 DSYNC=2 NONBLOCK=4 RSYNC=8 SYNC=16;
# errno INVAL=28, NOTSUP=58
EXPECTED = [
    "plain flags=0 keep=0 after=4 drop=0",
    "append flags=1 keep=0 after=5 drop=0",
    "append+sync flags=17 keep=0 after=21 drop=28",
    "dsync flags=2 keep=0 after=6 drop=28",
    "rsync flags=8 keep=0 after=12 drop=28",
]
NOTSUP = 58


def test_sync_flags_are_reported_and_fixed(build_wasm: Build, tmp_path: Path) -> None:
    wasm = build_wasm(PROGRAMS / "sync_flags.c")
    argv = [sys.executable, "-m", "donjon.cli.main", "run-wasm", "--dir", f"{tmp_path}::/"]
    proc = subprocess.run(
        [*argv, str(wasm)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == EXPECTED


def test_wasmtime_agrees_or_refuses(build_wasm: Build, wasmtime_cli: Path, tmp_path: Path) -> None:
    """Where wasmtime opens the file at all, it reports the same flags as Donjon."""
    wasm = build_wasm(PROGRAMS / "sync_flags.c")
    proc = subprocess.run(
        [str(wasmtime_cli), "run", "--dir", f"{tmp_path}::/", str(wasm)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for got, donjon in zip(proc.stdout.splitlines(), EXPECTED, strict=True):
        label = donjon.split()[0]
        assert got in (donjon, f"{label} open={NOTSUP}")
