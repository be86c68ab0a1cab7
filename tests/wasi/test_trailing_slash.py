"""``path_symlink`` onto ``NAME/``: the errno says what is there, as on Linux.

Found by the official WASI test suite (wasi-testsuite
``path_symlink_trailing_slashes`` with ``ERRNO_MODE_UNIX``): a regular file at
``target/`` answered EEXIST where Linux and wasmtime answer ENOTDIR. A symlink
there is expanded by the sandboxed resolver, as Linux follows it; one that
leads out is refused (EPERM) before anything outside is looked at. Errno
values are the witx spec's, copied by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostharness import PATH2_AT, HostHarness

ENOENT, ENOTDIR, EEXIST, EPERM = 44, 54, 20, 63
PREOPEN = 3


@pytest.mark.parametrize(
    ("name", "errno"),
    [
        ("hello.txt/", ENOTDIR),  # a regular file
        ("sub/", EEXIST),  # a directory
        ("missing/", ENOENT),
        ("sub/deeper//", EEXIST),
        ("link_in/", ENOTDIR),  # a link to a file inside: followed, as Linux
        ("link_abs_out/", EPERM),  # a link out: refused, nothing outside probed
        ("link_dir_out/", EPERM),
        ("dangling/", ENOENT),
    ],
)
def test_symlink_onto_trailing_slash(
    harness: HostHarness, tree: Path, name: str, errno: int
) -> None:
    before = sorted(p.name for p in tree.rglob("*"))
    target_ptr, target_len = harness.path("x")
    ptr, n = harness.path(name, PATH2_AT)
    assert harness.call("path_symlink", target_ptr, target_len, PREOPEN, ptr, n) == errno
    assert sorted(p.name for p in tree.rglob("*")) == before


def test_symlink_without_slash_still_creates(harness: HostHarness, tree: Path) -> None:
    target_ptr, target_len = harness.path("hello.txt")
    ptr, n = harness.path("fresh", PATH2_AT)
    assert harness.call("path_symlink", target_ptr, target_len, PREOPEN, ptr, n) == 0
    assert (tree / "fresh").is_symlink()
    ptr, n = harness.path("hello.txt", PATH2_AT)
    assert harness.call("path_symlink", target_ptr, target_len, PREOPEN, ptr, n) == EEXIST
