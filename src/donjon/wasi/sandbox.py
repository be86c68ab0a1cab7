"""Path resolution that cannot leave a preopened directory.

A guest path is walked one component at a time from a directory *fd*, never
by joining strings: every intermediate directory is opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to the previous one (``dir_fd=``), so a
directory renamed or swapped for a symlink mid-walk cannot redirect us
outside. ``..`` pops our own stack of open directories instead of asking the
host, so it can never climb above the starting directory. Symlinks are read
with ``readlink`` and expanded by us, under the same rules: an absolute
target, or one that climbs out, fails like wasmtime does (``EPERM``); more
than 40 expansions fail with ``ELOOP``.
"""

from __future__ import annotations

import errno
import os

from donjon.wasi import abi
from donjon.wasi.errors import WasiError

MAX_SYMLINKS = 40
#: errno for a path that would leave the sandbox (wasmtime 49 answers EPERM)
ESCAPE = abi.EPERM

#: walking a directory needs only search permission: O_PATH where the host has it (Linux)
_DIR_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | os.O_NOFOLLOW
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_PATH", 0)
)
#: host errnos meaning "that component is a symlink and O_NOFOLLOW refused it"
_SYMLINK_REFUSED = {errno.ELOOP, errno.ENOTDIR, getattr(errno, "EMLINK", errno.ELOOP)}


class Resolved:
    """Where a path ends: the directory fd that holds it and the last name.

    ``name`` is ``"."`` when the path names the directory itself. Close it
    (or use ``with``) to release the directories opened on the way.
    """

    __slots__ = ("_owned", "dirfd", "must_be_dir", "name")

    def __init__(self, dirfd: int, name: str, must_be_dir: bool, owned: list[int]) -> None:
        self.dirfd = dirfd
        self.name = name
        self.must_be_dir = must_be_dir
        self._owned = owned

    def close(self) -> None:
        while self._owned:
            os.close(self._owned.pop())

    def __enter__(self) -> Resolved:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def decode_path(raw: bytes) -> str:
    """Guest paths are UTF-8 without NUL, as WASI (and wasmtime) require."""
    if b"\0" in raw:
        raise WasiError(abi.EINVAL)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WasiError(abi.EILSEQ) from exc


def _split(path: str) -> list[str]:
    """Components without empty and ``.`` ones, except a final ``.`` (``rmdir("d/.")`` is
    EINVAL, not ``rmdir("d")``)."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if path == "." or path.endswith("/."):
        parts.append(".")
    return parts


def resolve(base: int, path: str, *, follow: bool) -> Resolved:
    """Walk ``path`` from directory fd ``base``; ``follow``: expand a final symlink too."""
    if not path:
        raise WasiError(abi.ENOENT)
    if path.startswith("/"):
        raise WasiError(ESCAPE)
    trailing = path.endswith("/") or path.endswith("/.") or path == "."
    work = _split(path)[::-1]  # the components still to walk, next one last
    stack: list[int] = []  # directories we opened; base is below them and not ours
    expansions = 0
    try:
        while work:
            part = work.pop()
            top = stack[-1] if stack else base
            if part == ".":  # only ever last: the directory itself
                return Resolved(top, ".", True, stack)
            if part == "..":
                if not stack:
                    raise WasiError(ESCAPE)
                os.close(stack.pop())
                if not work:
                    return Resolved(stack[-1] if stack else base, ".", True, stack)
                continue
            last = not work
            if last and not follow and not trailing:
                return Resolved(top, part, False, stack)
            if last:
                target = _readlink(top, part)
                if target is None:
                    return Resolved(top, part, trailing, stack)
            else:
                try:
                    stack.append(os.open(part, _DIR_FLAGS, dir_fd=top))
                    continue
                except OSError as exc:
                    if exc.errno not in _SYMLINK_REFUSED:
                        raise
                    target = _readlink(top, part)
                    if target is None:
                        raise
            expansions += 1
            if expansions > MAX_SYMLINKS:
                raise WasiError(abi.ELOOP)
            if target.startswith("/"):
                raise WasiError(ESCAPE)
            parts = _split(target)
            if parts and parts[-1] == "." and work:
                parts.pop()
            work.extend(reversed(parts))
            if not work:
                # "link -> ." : the path names the directory the link sits in.
                return Resolved(stack[-1] if stack else base, ".", True, stack)
            if last and target.endswith("/"):
                trailing = True
        return Resolved(stack[-1] if stack else base, ".", True, stack)
    except BaseException:
        for fd in stack:
            os.close(fd)
        raise


def _readlink(dirfd: int, name: str) -> str | None:
    """The target of symlink ``name``, or None when it is not a symlink (or not there)."""
    try:
        return os.readlink(name, dir_fd=dirfd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
            return None
        raise
