"""stdio pipes are grown so that 64 KiB guest writes do not ping-pong with the reader."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from donjon.wasi.api import Stdio, StdioKind
from donjon.wasi.fdtable import PIPE_CAPACITY, FdTable

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="F_SETPIPE_SZ is Linux-only")

F_GETPIPE_SZ = 1032  # <linux/fcntl.h>: F_LINUX_SPECIFIC_BASE + 8


def pipe_size(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, F_GETPIPE_SZ)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        os.close(fd)


def build(stdout: Stdio, stdin: Stdio | None = None) -> FdTable:
    null = Stdio(StdioKind.NULL)
    return FdTable.build((stdin or null, stdout, null), [], [])


def test_stdout_pipe_is_grown(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    assert pipe_size(write_end) < 1 << 20  # the kernel's default: 16 pages
    with os.fdopen(os.dup(write_end), "wb") as stream:
        table = build(Stdio(StdioKind.STREAM, stream=stream))
        table.close_all()
    assert PIPE_CAPACITY == 1 << 20
    assert pipe_size(read_end) == 1 << 20  # the pipe itself, seen from either end


def test_stdin_pipe_is_grown(pipe: tuple[int, int]) -> None:
    read_end, _ = pipe
    with os.fdopen(os.dup(read_end), "rb") as stream:
        build(Stdio(StdioKind.NULL), stdin=Stdio(StdioKind.STREAM, stream=stream)).close_all()
    assert pipe_size(read_end) == 1 << 20


def test_a_bigger_pipe_is_never_shrunk(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    from donjon.wasi import fdtable

    monkeypatch.setattr(fdtable, "PIPE_CAPACITY", 128 << 10)
    read_end, write_end = pipe
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 256 << 10)
    with os.fdopen(os.dup(write_end), "wb") as stream:
        build(Stdio(StdioKind.STREAM, stream=stream)).close_all()
    assert pipe_size(read_end) == 256 << 10


def test_refused_growth_leaves_the_pipe_working(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the user's pipe quota the kernel says EPERM: the run goes on with the pipe as is."""
    import fcntl

    real = fcntl.fcntl

    def refuse(fd: int, cmd: int, arg: int = 0) -> int:
        if cmd == fcntl.F_SETPIPE_SZ:
            raise PermissionError(1, "Operation not permitted")
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", refuse)
    read_end, write_end = pipe
    before = pipe_size(read_end)
    with os.fdopen(os.dup(write_end), "wb") as stream:
        table = build(Stdio(StdioKind.STREAM, stream=stream))
        entry = table.get(1)
        assert entry.fast_write >= 0
        assert os.write(entry.fast_write, b"still works") == 11
        table.close_all()
    assert os.read(read_end, 100) == b"still works"
    assert pipe_size(read_end) == before
