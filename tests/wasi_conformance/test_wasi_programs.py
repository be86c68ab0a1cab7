"""Differential WASI preview1 conformance: each program under wasmtime CLI and Donjon.

Every program checks its own results against hand-written spec constants
(``FAIL`` lines), and Donjon's stdout, exit code and resulting file tree must
equal the reference wasmtime CLI's. See ``tests/programs/c/wasitest.h``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wasi_harness import Case, differential

ENV = {"FOO": "bar", "EMPTY": "", "SPACED": "a b=c"}

CASES = [
    Case("c/args_env.c", args=("alpha", "two words", "", "ünï"), env=ENV),
    Case("c/clocks.c"),
    Case("c/random.c"),
    Case("c/stdio.c", stdin=b"line one\nline two\n"),
    Case("c/prestat.c"),
    Case("c/files.c"),
    Case("c/dirs.c"),
    Case("c/readdir.c"),
    Case("c/sandbox.c"),
    Case("c/poll.c", stdin=b"ping\n"),
    Case("c/sock_errors.c"),
    Case("c/paths_misc.c"),
    Case("c/grow.c"),
    Case("c/limits.c"),
    Case("c/many_fds.c", args=("3000",)),
    Case("c/traps.c", args=("ok",)),
    *(
        Case("c/traps.c", args=(t,), exit_code=134)
        for t in ("unreachable", "stack", "divzero", "oob")
    ),
    Case("c/sched_exit.c", args=("0",)),
    Case("c/sched_exit.c", args=("7",), exit_code=7),
    Case("c/sched_exit.c", args=("125",), exit_code=125),
    # wasmtime refuses statuses from 126 up (shells reserve them): exit 1 with an error
    Case("c/sched_exit.c", args=("126",), exit_code=1),
    Case("c/sched_exit.c", args=("255",), exit_code=1),
    Case(
        "rust/std_fs.rs",
        args=("one", "two"),
        env={"RUST_TEST": "yes"},
        stdin=b"stdin text\n",
        exit_code=3,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_program(case: Case, tmp_path: Path) -> None:
    differential(case, tmp_path)


def test_sched_exit_prints_unterminated_line(tmp_path: Path) -> None:
    """stdout written without a newline before proc_exit is not lost."""
    out = differential(Case("c/sched_exit.c", args=("5",), exit_code=5), tmp_path)
    for outcome in out.values():
        assert outcome.text().endswith("exiting with 5")
