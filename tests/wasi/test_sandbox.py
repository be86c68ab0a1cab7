"""Sandbox escapes: every way out of a preopen fails with wasmtime's errno.

Errno values are the witx spec's (hand-copied constants, not donjon.wasi.abi).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hostharness import OUT_AT, PATH2_AT, SECRET, HostHarness

ENOENT, EPERM, ELOOP, ENOTDIR, EEXIST = 44, 63, 32, 54, 20
FILETYPE_SYMLINK = 7
PREOPEN = 3


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "/etc/passwd",
        "/",
        "sub/../../outside/secret.txt",
        "sub/deeper/../../../outside/secret.txt",
        "link_abs_out",
        "link_up_out",
        "link_dir_out/secret.txt",
        "chain1",
        "sub/../link_dir_out/secret.txt",
    ],
)
def test_escape_refused(harness: HostHarness, path: str) -> None:
    err, _ = harness.open(PREOPEN, path)
    assert err == EPERM


@pytest.mark.parametrize("path", ["loop1", "self_loop", "loop2/x"])
def test_symlink_loops_are_eloop(harness: HostHarness, path: str) -> None:
    assert harness.open(PREOPEN, path)[0] == ELOOP


def test_final_symlink_without_follow_is_eloop(harness: HostHarness) -> None:
    assert harness.open(PREOPEN, "link_up_out", follow=False)[0] == ELOOP


def test_dangling_symlink_is_enoent(harness: HostHarness) -> None:
    assert harness.open(PREOPEN, "dangling")[0] == ENOENT


@pytest.mark.parametrize("path", ["hello.txt", "link_in", "sub/deeper/up_in", "sub/../hello.txt"])
def test_inside_paths_work(harness: HostHarness, path: str) -> None:
    err, fd = harness.open(PREOPEN, path)
    assert err == 0
    assert harness.read(fd, 64) == (0, b"hello\n")


def test_path_through_a_file_is_enotdir(harness: HostHarness) -> None:
    assert harness.open(PREOPEN, "hello.txt/x")[0] == ENOTDIR


def test_stat_follow_refused_nofollow_sees_the_link(harness: HostHarness) -> None:
    ptr, n = harness.path("link_up_out")
    assert harness.call("path_filestat_get", PREOPEN, 1, ptr, n, OUT_AT) == EPERM
    assert harness.call("path_filestat_get", PREOPEN, 0, ptr, n, OUT_AT) == 0
    assert harness.get(OUT_AT + 16, 1)[0] == FILETYPE_SYMLINK


def test_readlink_shows_target_without_following(harness: HostHarness) -> None:
    ptr, n = harness.path("link_up_out")
    buf = OUT_AT + 64
    assert harness.call("path_readlink", PREOPEN, ptr, n, buf, 128, OUT_AT) == 0
    assert harness.get(buf, harness.u32(OUT_AT)) == b"../outside/secret.txt"


def test_new_symlinks_cannot_lead_out(harness: HostHarness, tree: Path) -> None:
    target, tn = harness.path("/etc/passwd", PATH2_AT)
    ptr, n = harness.path("abs")
    assert harness.call("path_symlink", target, tn, PREOPEN, ptr, n) == EPERM
    target, tn = harness.path("../outside/secret.txt", PATH2_AT)
    ptr, n = harness.path("up")
    assert harness.call("path_symlink", target, tn, PREOPEN, ptr, n) == 0
    assert os.readlink(tree / "up") == "../outside/secret.txt"
    assert harness.open(PREOPEN, "up")[0] == EPERM


@pytest.mark.parametrize(
    "call",
    ["path_create_directory", "path_unlink_file", "path_remove_directory"],
)
def test_mutations_outside_refused(harness: HostHarness, tree: Path, call: str) -> None:
    ptr, n = harness.path("../outside/secret.txt")
    assert harness.call(call, PREOPEN, ptr, n) == EPERM
    assert (tree.parent / "outside" / "secret.txt").read_bytes() == SECRET


def test_rename_and_link_out_refused(harness: HostHarness, tree: Path) -> None:
    src, sn = harness.path("hello.txt")
    dst, dn = harness.path("../outside/stolen", PATH2_AT)
    assert harness.call("path_rename", PREOPEN, src, sn, PREOPEN, dst, dn) == EPERM
    assert harness.call("path_link", PREOPEN, 0, src, sn, PREOPEN, dst, dn) == EPERM
    assert not (tree.parent / "outside" / "stolen").exists()
    assert (tree / "hello.txt").exists()


def test_directory_moved_out_is_no_way_out(harness: HostHarness, tree: Path) -> None:
    """The guest holds a directory fd; the host moves that directory outside the preopen.

    The fd stays a capability for what is inside it, but ``..`` from it is refused:
    we never ask the host to resolve ``..``.
    """
    err, sub = harness.open(PREOPEN, "sub", oflags=2, rights=(1 << 30) - 1 - 64)
    assert err == 0
    os.rename(tree / "sub", tree.parent / "outside" / "sub")
    assert harness.open(sub, "../secret.txt")[0] == EPERM
    assert harness.open(sub, "..")[0] == EPERM
    err, fd = harness.open(sub, "a.txt")
    assert (err, harness.read(fd, 8)) == (0, (0, b"a\n"))


def test_component_swapped_for_a_symlink(harness: HostHarness, tree: Path) -> None:
    """A directory replaced by a symlink to the outside between two calls: still refused."""
    os.rename(tree / "sub", tree / "sub.old")
    os.symlink("../outside", tree / "sub")
    assert harness.open(PREOPEN, "sub/secret.txt")[0] == EPERM


def test_path_with_nul_or_bad_utf8(harness: HostHarness) -> None:
    einval, eilseq = 28, 25
    harness.put(0x1000, b"hel\0lo")
    args = (1, 0x1000, 6, 0, (1 << 30) - 1, (1 << 30) - 1, 0, OUT_AT)
    assert harness.call("path_open", PREOPEN, *args) == einval
    harness.put(0x1000, b"\xff\xfe")
    args = (1, 0x1000, 2, 0, (1 << 30) - 1, (1 << 30) - 1, 0, OUT_AT)
    assert harness.call("path_open", PREOPEN, *args) == eilseq


def test_create_exclusive_existing(harness: HostHarness) -> None:
    creat_excl = 1 | 4
    assert harness.open(PREOPEN, "hello.txt", oflags=creat_excl)[0] == EEXIST
    assert struct.calcsize("<I") == 4
