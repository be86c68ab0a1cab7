"""The five fibonacci examples print the same answers, under every runtime.

Expected values are the Fibonacci numbers themselves (OEIS A000045), written
out by hand; fib(93) is the largest that fits in 64 bits.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from example_helpers import RUN_TIMEOUT, make_package

from support.keepproc import donjon_cmd

LANGUAGES = ["c", "cpp", "rust", "zig", "assemblyscript"]
EXPECTED = "fib(7) = 13\nfib(21) = 10946\nfib(25) = 75025\n"
ARGS = ["7", "21", "25"]
STDIN = "7\n21 25\n"  # one per line and whitespace separated, both
INVALID = "fibonacci: invalid input '{}': expected an integer from 0 to 93\n"


def run(cmd: list[str], stdin: str = "", env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, timeout=RUN_TIMEOUT, env=env, check=False
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("language", LANGUAGES)
def test_wasmtime_cli_args_and_stdin(
    language: str, example_wasm: Callable[[str], Path], wasmtime_cli: Path
) -> None:
    wasm = example_wasm(f"fibonacci-{language}")
    assert run([str(wasmtime_cli), "run", str(wasm), *ARGS]) == (0, EXPECTED, "")
    assert run([str(wasmtime_cli), "run", str(wasm)], stdin=STDIN) == (0, EXPECTED, "")


@pytest.mark.parametrize("language", LANGUAGES)
def test_edges_and_errors_are_the_same_in_every_language(
    language: str, example_wasm: Callable[[str], Path], wasmtime_cli: Path
) -> None:
    wasm = str(example_wasm(f"fibonacci-{language}"))
    cli = str(wasmtime_cli)
    edges = run([cli, "run", wasm, "0", "1", "2", "007", "92", "93"])
    assert edges == (
        0,
        "fib(0) = 0\nfib(1) = 1\nfib(2) = 1\nfib(7) = 13\n"
        "fib(92) = 7540113804746346429\nfib(93) = 12200160415121876738\n",
        "",
    )
    # The first bad token stops the run; what came before it was printed.
    assert run([cli, "run", wasm, "5", "94", "6"]) == (1, "fib(5) = 5\n", INVALID.format("94"))
    assert run([cli, "run", wasm], stdin="3\n-1\n") == (1, "fib(3) = 2\n", INVALID.format("-1"))
    assert run([cli, "run", wasm, "1e3"]) == (1, "", INVALID.format("1e3"))
    assert run([cli, "run", wasm, "99999999999999999999"]) == (
        1,
        "",
        INVALID.format("99999999999999999999"),
    )
    assert run([cli, "run", wasm], stdin=" \n\t ") == (0, "", "")  # nothing to answer


@pytest.mark.parametrize("language", LANGUAGES)
def test_donjon_run_wasm_args_and_stdin(
    language: str, example_wasm: Callable[[str], Path], donjon_env: dict[str, str]
) -> None:
    wasm = str(example_wasm(f"fibonacci-{language}"))
    assert run(donjon_cmd("run-wasm", wasm, *ARGS), env=donjon_env) == (0, EXPECTED, "")
    assert run(donjon_cmd("run-wasm", wasm), stdin=STDIN, env=donjon_env) == (0, EXPECTED, "")
    assert run(donjon_cmd("run-wasm", wasm, "x"), env=donjon_env) == (1, "", INVALID.format("x"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_donjon_run_in_a_keep_args_and_stdin(
    language: str,
    example_wasm: Callable[[str], Path],
    donjon_env: dict[str, str],
    tmp_path: Path,
) -> None:
    name = f"fibonacci-{language}"
    wasm = example_wasm(name)
    # The example's own Enarx.toml: no args, so the numbers come from stdin.
    pkg = make_package(tmp_path, name, wasm)
    assert (pkg / "Enarx.toml").is_file()
    code, out, err = run(donjon_cmd("run", "-q", str(pkg)), stdin=STDIN, env=donjon_env)
    assert (code, out) == (0, EXPECTED), err
    # The same package with its numbers as args in the config.
    stdio = (pkg / "Enarx.toml").read_text()
    with_args = make_package(tmp_path / "args", name, wasm, 'args = ["7", "21", "25"]\n' + stdio)
    code, out, err = run(donjon_cmd("run", "-q", str(with_args)), env=donjon_env)
    assert (code, out) == (0, EXPECTED), err
