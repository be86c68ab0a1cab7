"""Fixtures shared by every test module.

* ``vectors``: the real attestation evidence in ``../shared/vectors``, or a skip
  that says why it is missing.
* ``expected``: ``expected.json`` from that folder.
* ``build_wasm``: builds a test program from source (C, C++, Zig, Rust, WAT),
  skipping with the reason when its toolchain is not installed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from donjon import toolchain

REPO = Path(__file__).resolve().parent.parent


def vectors_dir() -> Path | None:
    """Where the shared vectors are: ``$DONJON_VECTORS`` or ``../shared/vectors``."""
    env = os.environ.get("DONJON_VECTORS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "vectors")
    for path in candidates:
        if (path / "expected.json").is_file():
            return path
    return None


@pytest.fixture(autouse=True)
def _root_logger_as_it_was() -> Iterator[None]:
    """Logging as it was before the test: the fuzz targets' Steward turns logging off
    (``logging.disable``, fuzz/targets.py) and a command run in process sets the root
    logger's level and handler (``logging.basicConfig``). Left so, a later test's
    ``caplog`` saw nothing, depending on which test ran before it in this process
    (pytest-xdist orders files differently from a serial run)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    logging.disable(logging.NOTSET)  # a fuzz target may have been built at collection
    yield
    logging.disable(logging.NOTSET)
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture(scope="session")
def vectors() -> Path:
    path = vectors_dir()
    if path is None:
        pytest.skip(
            "attestation vectors not found: expected ../shared/vectors/expected.json "
            "(or set DONJON_VECTORS)"
        )
    return path


@pytest.fixture(scope="session")
def expected(vectors: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors / "expected.json").read_text())
    return data


@pytest.fixture(scope="session")
def build_wasm() -> Callable[[Path], Path]:
    def build(src: Path) -> Path:
        try:
            return toolchain.build(src)
        except toolchain.ToolchainMissing as exc:
            pytest.skip(str(exc))

    return build


@pytest.fixture(scope="session")
def wasmtime_cli() -> Path:
    try:
        return toolchain.wasmtime_cli()
    except toolchain.ToolchainMissing as exc:
        pytest.skip(str(exc))


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Long byte strings are named by their argument, not their bytes: test ids must be
    the same in every process (pytest-xdist's workers each collect the suite, and some
    parameters hold freshly generated keys), and kilobytes of escaped bytes say nothing.
    The case's message parameter names it; repeated names get pytest's index suffix."""
    if isinstance(val, bytes | bytearray) and len(val) > 64:
        return argname
    return None


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("DONJON_TEST_NO_REEXEC"):
        _skip_tests_that_start_the_interpreter()


def _skip_tests_that_start_the_interpreter() -> None:
    """Under ``qemu-aarch64-static -L`` without binfmt_misc, a started ``sys.executable``
    would run as a native binary and fail: such a test is skipped, with that reason."""
    original = subprocess.Popen.__init__
    me = os.path.realpath(sys.executable)

    def init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)
        if argv and os.path.realpath(os.fsdecode(argv[0])) == me:
            pytest.skip("starts the interpreter again: needs qemu registered with binfmt_misc")
        original(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = init  # type: ignore[method-assign]
