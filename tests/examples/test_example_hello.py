"""hello greets its first argument, under the reference wasmtime CLI and in a Keep."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from example_helpers import RUN_TIMEOUT, make_package

from support.keepproc import donjon_cmd


def test_wasmtime_cli(example_wasm: Callable[[str], Path], wasmtime_cli: Path) -> None:
    wasm = str(example_wasm("hello"))
    plain = subprocess.run(
        [str(wasmtime_cli), "run", wasm], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert (plain.returncode, plain.stdout) == (0, "Hello, world! Greetings from WebAssembly.\n")
    named = subprocess.run(
        [str(wasmtime_cli), "run", "--env", "FD_COUNT=3", wasm, "Ada"],
        capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )  # fmt: skip
    assert named.stdout == (
        "Hello, Ada! Greetings from WebAssembly.\nThe Keep gave me 3 files (FD_COUNT).\n"
    )


def test_donjon_run_wasm(example_wasm: Callable[[str], Path], donjon_env: dict[str, str]) -> None:
    proc = subprocess.run(
        donjon_cmd("run-wasm", str(example_wasm("hello")), "Ada"),
        capture_output=True, text=True, timeout=RUN_TIMEOUT, env=donjon_env,
    )  # fmt: skip
    # run-wasm is no Keep: it exports no FD_COUNT.
    assert (proc.returncode, proc.stdout) == (0, "Hello, Ada! Greetings from WebAssembly.\n")


def test_donjon_run_uses_the_examples_enarx_toml(
    example_wasm: Callable[[str], Path], donjon_env: dict[str, str], tmp_path: Path
) -> None:
    pkg = make_package(tmp_path, "hello", example_wasm("hello"))
    proc = subprocess.run(
        donjon_cmd("run", str(pkg)),
        capture_output=True, text=True, timeout=RUN_TIMEOUT, env=donjon_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # args = ["Keep"] from Enarx.toml, and the Keep's FD_COUNT for its three stdio entries.
    assert proc.stdout == (
        "Hello, Keep! Greetings from WebAssembly.\nThe Keep gave me 3 files (FD_COUNT).\n"
    )
    # The nil platform never pretends: it says so on stderr.
    assert "UNATTESTED" in proc.stderr
