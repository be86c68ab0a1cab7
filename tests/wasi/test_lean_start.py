"""The lean ``donjon run-wasm`` start (``donjon.cli.entry``) against the full click command.

The lean start must import neither click nor the wasmtime package, and must
answer exactly as ``python -m donjon.cli.main run-wasm`` does: same stdout,
stderr and exit code, for runs and for every kind of mistake.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path, PurePath

import pytest
from hostharness import PROGRAMS
from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.cli import failure
from donjon.cli.run_wasm import run_wasm
from donjon.cli.run_wasm_core import RunWasmOptions, parse_argv, path_text
from donjon.errors import DonjonError, UsageError

Build = Callable[[Path], Path]

#: Modules that cost milliseconds to import and that a plain run never needs.
SLOW_MODULES = [
    "click",
    "wasmtime",
    "wasmtime._bindings",
    "donjon.cli.main",
    "dataclasses",
    "typing",
    "re",
    "pathlib",
    "enum",
    "inspect",
    "socket",
    "ssl",
    "threading",
    "hashlib",
    "contextlib",
    "tempfile",
    "importlib.util",
]


def donjon(entry: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    """``entry`` is ``donjon`` (the lean start, as the console script) or ``donjon.cli.main``.

    Both share one module cache in ``cwd`` (and the test's state directory, so its key).
    """
    proc = subprocess.run(
        [sys.executable, "-m", entry, "run-wasm", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={**os.environ, "DONJON_CACHE_DIR": str(cwd / "module-cache")},
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from donjon import toolchain

    out = tmp_path_factory.mktemp("programs")
    found = {}
    for name in ("hello.c", "divzero.wat", "exit_status.wat", "not_wasi.wat", "no_start.wat"):
        try:
            built = toolchain.build(PROGRAMS / name)
        except toolchain.ToolchainMissing as exc:
            pytest.skip(str(exc))
        found[name] = Path(shutil.copy(built, out / f"{PurePath(name).stem}.wasm"))
    (out / "sub").mkdir()
    return found


CASES: dict[str, Callable[[dict[str, Path], Path], list[str]]] = {
    "args": lambda p, _: [str(p["hello.c"]), "a", "b c"],
    "env and dirs": lambda p, t: [
        "--env",
        "K=V",
        "--env=X=1",
        "--dir",
        f"{t}::/data",
        "--dir-ro",
        str(t),
        str(p["hello.c"]),
    ],
    "options after the module go to the guest": lambda p, _: [str(p["hello.c"]), "--help", "-x"],
    "untidy module path": lambda p, _: [f"{p['hello.c'].parent}//./{p['hello.c'].name}"],
    "limits": lambda p, _: [
        "--memory=64M",
        "--timeout",
        "30",
        "--call-timeout=5",
        "--no-cache",
        "--inherit-env",
        str(p["exit_status.wat"]),
        "7",
    ],
    "trap": lambda p, _: [str(p["divzero.wat"])],
    "not wasi": lambda p, _: [str(p["not_wasi.wat"])],
    "no _start": lambda p, _: [str(p["no_start.wat"])],
    "no such file": lambda _, t: [str(t / "nothing.wasm")],
    "module is a directory": lambda _, t: [str(t)],
    "bad memory": lambda p, _: ["--memory", "lots", str(p["hello.c"])],
    "bad timeout": lambda p, _: ["--timeout", "0", str(p["hello.c"])],
    "timeout not a number": lambda p, _: ["--timeout", "soon", str(p["hello.c"])],
    "bad env": lambda p, _: ["--env", "NOVALUE", str(p["hello.c"])],
    "bad dir": lambda p, t: ["--dir", f"{t}/missing//x::/d", str(p["hello.c"])],
    "bad listen": lambda p, _: ["--listen", "127.0.0.1:99999", str(p["hello.c"])],
    "help": lambda _, __: ["--help"],
    "short help": lambda _, __: ["-h"],
    "unknown option": lambda p, _: ["--nope", str(p["hello.c"])],
    "missing value": lambda _, __: ["--env"],
    "value like an option": lambda p, _: ["--env", "--dir", str(p["hello.c"])],
    "no module": lambda _, __: [],
    "double dash": lambda p, _: ["--", str(p["hello.c"])],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lean_start_answers_as_the_full_command(
    case: str, programs: dict[str, Path], tmp_path: Path
) -> None:
    args = CASES[case](programs, tmp_path)
    lean = donjon("donjon", *args, cwd=tmp_path)
    full = donjon("donjon.cli.main", *args, cwd=tmp_path)
    assert lean == full
    assert "Traceback" not in lean[2]


def test_the_cases_cover_runs_and_errors(programs: dict[str, Path], tmp_path: Path) -> None:
    """Guard against a comparison of two identical failures: the cases really run guests."""
    code, out, err = donjon("donjon", *CASES["args"](programs, tmp_path), cwd=tmp_path)
    assert (code, err) == (3, "")
    assert out.splitlines() == ["argv[0]=hello.wasm", "argv[1]=a", "argv[2]=b c"]
    code, out, err = donjon("donjon", *CASES["trap"](programs, tmp_path), cwd=tmp_path)
    assert (code, out) == (134, "")
    assert err == "donjon: trap: integer divide by zero in func foo\n"
    code, _, err = donjon("donjon", *CASES["bad memory"](programs, tmp_path), cwd=tmp_path)
    assert code == 2
    assert err.startswith("donjon: error: --memory: cannot read size 'lots'")


def test_lean_start_imports_neither_click_nor_the_bindings(
    programs: dict[str, Path], tmp_path: Path
) -> None:
    """What the lean start adds to ``sys.modules`` on a cache hit (site's own hooks are not
    its doing; a miss also loads what writing the cache entry needs)."""
    listing = tmp_path / "modules.txt"
    script = (
        "import atexit, sys\n"
        "before = set(sys.modules)\n"
        "atexit.register(lambda: open(sys.argv[1], 'w').write("
        "'\\n'.join(sorted(set(sys.modules) - before))))\n"
        "from donjon.cli.entry import main\n"
        "sys.exit(main(sys.argv[2:]))\n"
    )
    env = {**os.environ, "DONJON_CACHE_DIR": str(tmp_path / "module-cache")}
    command = [sys.executable, "-c", script, str(listing), "run-wasm", str(programs["hello.c"])]
    subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)  # fill it
    proc = subprocess.run(
        [*command, "x"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert (proc.returncode, proc.stderr) == (2, "")
    assert "argv[1]=x" in proc.stdout
    added = set(listing.read_text().split())
    assert {"donjon.cli.entry", "donjon.wasi.capi", "ctypes"} <= added  # the listing is real
    assert not added & set(SLOW_MODULES)


# --- the lean reader agrees with click ------------------------------------------------------

TOKENS = [
    "--dir", "--dir-ro", "--env", "--memory", "--timeout", "--call-timeout", "--listen",
    "--inherit-env", "--no-cache", "--help", "-h", "--", "-", "--nope", "--env=A=1",
    "--timeout=2.5", "--timeout=x", "--memory=", "--inherit-env=1", "3", "1e3", "nan", "a::b",
    "A=1", "x", "", "m.wasm", "./m.wasm", "d", "d/", "x//y",
]  # fmt: skip


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a file ``m.wasm`` and a directory ``d``, for the argv tokens."""
    root = tmp_path_factory.mktemp("layout")
    (root / "m.wasm").write_bytes(b"\0asm\1\0\0\0")
    (root / "d").mkdir()
    return root


@settings(max_examples=400, deadline=None)
@given(argv=st.lists(st.sampled_from(TOKENS), max_size=7))
def test_parse_argv_reads_what_click_reads(layout: Path, argv: list[str]) -> None:
    here = os.getcwd()
    os.chdir(layout)
    try:
        ours = parse_argv(argv)
        if ours is None:
            return  # click decides; nothing to compare
        ctx = run_wasm.make_context("run-wasm", list(argv))
    finally:
        os.chdir(here)
    params = ctx.params
    assert path_text(ours.module) == os.fspath(params["module"])
    for name in RunWasmOptions.__slots__:
        if name != "module":
            assert repr(getattr(ours, name)) == repr(params[name]), name  # repr: nan == nan


@given(st.text(alphabet="/.ab", max_size=8))
def test_path_text_spells_paths_as_pathlib(text: str) -> None:
    assert path_text(text) == str(Path(text))


# --- one-line failures -----------------------------------------------------------------------


def test_failure_report_is_one_line_each(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DONJON_DEBUG", raising=False)
    cases: list[tuple[BaseException, int, str]] = [
        (UsageError("bad flag", hint="try --help"), 2,
         "donjon: error: bad flag\ndonjon: hint: try --help\n"),
        (DonjonError("broken"), 1, "donjon: error: broken\n"),
        (KeyboardInterrupt(), 130, "donjon: interrupted\n"),
        (BrokenPipeError(), 141, ""),
        (FileNotFoundError(2, "No such file or directory", "/x"), 1,
         "donjon: error: No such file or directory: /x\n"),
        (RuntimeError("boom"), 70, "donjon: internal error: RuntimeError: boom (set "
         "DONJON_DEBUG=1 for the traceback, and please report it)\n"),
    ]  # fmt: skip
    for exc, code, text in cases:
        assert failure.report(exc) == code
        assert capsys.readouterr().err == text
    monkeypatch.setenv("DONJON_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        failure.report(RuntimeError("boom"))
