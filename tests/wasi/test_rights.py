"""Rights: enforced on every call, can only be dropped, and read-only preopens stay read-only."""

from __future__ import annotations

import struct
from pathlib import Path

from hostharness import OUT_AT, HostHarness

from donjon.wasi.api import Preopen

EBADF, ENOTCAPABLE = 8, 76
FD_READ, FD_SEEK, FD_WRITE = 1 << 1, 1 << 2, 1 << 6
ALL = (1 << 30) - 1
PREOPEN = 3


def fdstat(h: HostHarness, fd: int) -> tuple[int, int, int, int]:
    assert h.call("fd_fdstat_get", fd, OUT_AT) == 0
    filetype, flags, base, inheriting = struct.unpack("<BxHxxxxQQ", h.get(OUT_AT, 24))
    return filetype, flags, base, inheriting


def test_read_only_fd_refuses_writes(harness: HostHarness) -> None:
    err, fd = harness.open(PREOPEN, "hello.txt", rights=FD_READ | FD_SEEK)
    assert err == 0
    assert harness.write(fd, b"x")[0] == EBADF
    assert fdstat(harness, fd)[2] & FD_WRITE == 0


def test_rights_can_be_dropped_never_regained(harness: HostHarness) -> None:
    err, fd = harness.open(PREOPEN, "hello.txt", rights=FD_READ | FD_WRITE | FD_SEEK)
    assert err == 0
    _, _, base, inheriting = fdstat(harness, fd)
    assert harness.call("fd_fdstat_set_rights", fd, base & ~FD_READ, inheriting) == 0
    assert harness.read(fd, 4)[0] == EBADF
    assert harness.call("fd_fdstat_set_rights", fd, base, inheriting) == ENOTCAPABLE
    assert fdstat(harness, fd)[2] == base & ~FD_READ


def test_opened_rights_never_exceed_the_parent(harness: HostHarness) -> None:
    _, _, parent_base, parent_inheriting = fdstat(harness, PREOPEN)
    assert (
        harness.call("fd_fdstat_set_rights", PREOPEN, parent_base, parent_inheriting & ~FD_WRITE)
        == 0
    )
    err, fd = harness.open(PREOPEN, "hello.txt", rights=ALL)
    assert err == 0
    assert fdstat(harness, fd)[2] & FD_WRITE == 0
    assert harness.write(fd, b"x")[0] == EBADF


def test_read_only_preopen(tree: Path) -> None:
    h = HostHarness([Preopen(tree, "/", writable=False)], [])
    try:
        creat, trunc = 1, 8
        assert h.open(PREOPEN, "new.txt", oflags=creat)[0] == ENOTCAPABLE
        assert h.open(PREOPEN, "hello.txt", oflags=trunc)[0] == ENOTCAPABLE
        assert h.open(PREOPEN, "hello.txt", rights=FD_READ | FD_WRITE)[0] == ENOTCAPABLE
        for call in ("path_create_directory", "path_unlink_file", "path_remove_directory"):
            ptr, n = h.path("sub/a.txt" if call != "path_create_directory" else "newdir")
            assert h.call(call, PREOPEN, ptr, n) == ENOTCAPABLE, call
        err, fd = h.open(PREOPEN, "hello.txt", rights=FD_READ)
        assert err == 0
        assert h.read(fd, 16) == (0, b"hello\n")
        assert h.write(fd, b"x")[0] == EBADF
        # A directory opened below a read-only preopen is read-only too.
        err, sub = h.open(PREOPEN, "sub", oflags=2, rights=ALL & ~FD_WRITE)
        assert err == 0
        assert h.open(sub, "b.txt", oflags=creat)[0] == ENOTCAPABLE
    finally:
        h.close()
    assert (tree / "hello.txt").read_bytes() == b"hello\n"
    assert not (tree / "new.txt").exists() and not (tree / "newdir").exists()
    assert (tree / "sub" / "a.txt").exists() and not (tree / "sub" / "b.txt").exists()
