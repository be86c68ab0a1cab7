"""Compiled-module cache: ``Module.serialize`` output on disk, keyed by engine and module.

Loading a serialized module takes well under a millisecond against 100+ ms to
compile. A serialized module is native code that the engine runs as it is, so
the cache directory is untrusted input: whoever can write it could otherwise
plant code under a good module's name. Each entry therefore carries an
HMAC-SHA-256 over its name (libwasmtime build, engine flags, the module's
SHA-256) and its payload, under a random key that only Donjon holds: 32 bytes,
mode 0600, in the state directory (not the cache directory), made on first use.
An entry that fails the check (planted, copied from another module's name,
truncated, or written under another key) is discarded with a warning and the
module is recompiled. A key that cannot be made or trusted (someone else's,
readable by others, the wrong size) turns the cache off for the run, with a
warning. Files are written atomically, so concurrent runs never see half a file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime import _ffi as ffi

from donjon.atomicfile import write_bytes
from donjon.statedir import default_state_dir
from donjon.wasi.errors import ModuleError

log = logging.getLogger("donjon.wasi")

MAGIC = b"DJMC2\0"
_TAG = 32
#: The HMAC key's file name in the state directory.
KEY_NAME = "module-cache.key"
KEY_BYTES = 32


class CacheKeyError(Exception):
    """The cache's HMAC key cannot be made or trusted; the cache is off for this run."""


def default_cache_dir() -> Path:
    """``$DONJON_CACHE_DIR``, else ``$XDG_CACHE_HOME/donjon/modules``, else ``~/.cache/...``."""
    explicit = os.environ.get("DONJON_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "donjon" / "modules"


def default_key_file() -> Path:
    """``module-cache.key`` in the state directory (``$DONJON_STATE_DIR``, ...)."""
    return default_state_dir() / KEY_NAME


def engine_identity() -> str:
    """Names the exact libwasmtime in use; a new build changes every key."""
    lib = Path(ffi.filename)
    st = lib.stat()
    return f"{lib.name}:{st.st_size}:{st.st_mtime_ns}"


def compile_module(engine: wasmtime.Engine, wasm: bytes, where: str) -> wasmtime.Module:
    """Compile, turning the engine's multi-line error into one line naming the file."""
    if wasm[:4] != b"\0asm":
        raise ModuleError(f"{where}: not a WebAssembly module (bad magic number)")
    try:
        return wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModuleError(f"{where}: invalid WebAssembly module: {detail}") from exc


def read_key(path: Path) -> bytes | None:
    """The key in ``path``, or None when there is none yet.

    Trusted only as a regular file (not a symlink) of ``KEY_BYTES`` bytes, owned by
    this user and closed to group and others: a key someone else could read or
    have placed would let them forge entries.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CacheKeyError(f"{path}: is a symbolic link, not the key file") from None
        raise CacheKeyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CacheKeyError(f"{path}: not a regular file")
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise CacheKeyError(f"{path}: owned by uid {st.st_uid}, not by this user")
        if st.st_mode & 0o077:
            raise CacheKeyError(
                f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read or change "
                "it (it must be 0600)"
            )
        data = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) != KEY_BYTES:
        raise CacheKeyError(f"{path}: holds {len(data)} bytes, not a {KEY_BYTES}-byte key")
    return data


def load_key(path: Path) -> bytes:
    """The cache's HMAC key, made (0600, atomically) on first use.

    Two runs that start together agree on one key: the new key is written to a
    private temporary file and hard-linked into place, which fails if another
    run's key got there first; that key is then read instead.
    """
    existing = read_key(path)
    if existing is not None:
        return existing
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".module-cache-key.", dir=path.parent)
    except OSError as exc:
        raise CacheKeyError(f"{path}: cannot create: {exc.strerror or exc}") from None
    key = secrets.token_bytes(KEY_BYTES)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            _create_exclusive(path, key)
    except OSError as exc:
        raise CacheKeyError(f"{path}: cannot create: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    found = read_key(path)
    if found is None:
        raise CacheKeyError(f"{path}: vanished while it was being created")
    return found


def _create_exclusive(path: Path, key: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)


class ModuleCache:
    def __init__(self, directory: Path, engine_flags: str, key_file: Path | None = None) -> None:
        self.directory = directory
        self.engine_flags = engine_flags
        self.key_file = key_file if key_file is not None else default_key_file()
        #: what the last :meth:`load` did: "hit", "miss", "corrupt" (an entry failed its
        #: check and was replaced) or "off" (no usable key: compiled, nothing cached)
        self.last = ""

    def entry_name(self, wasm: bytes) -> str:
        """The format is part of the name: entries of another Donjon version sharing the
        directory are never read (nor warned about), only this format's."""
        key = hashlib.sha256(MAGIC)
        for part in (engine_identity(), self.engine_flags, hashlib.sha256(wasm).hexdigest()):
            key.update(part.encode() + b"\0")
        return key.hexdigest()

    def path_for(self, wasm: bytes) -> Path:
        return self.directory / f"{self.entry_name(wasm)}.cwasm"

    def load(
        self,
        engine: wasmtime.Engine,
        wasm: bytes,
        where: str,
        progress: Callable[[str], None] | None = None,
    ) -> wasmtime.Module:
        try:
            key = load_key(self.key_file)
        except CacheKeyError as exc:
            log.warning("module cache off for this run: %s", exc)
            self.last = "off"
            if progress is not None:
                progress(f"compiling {where} ({len(wasm) // 1024} KiB)")
            return compile_module(engine, wasm, where)
        name = self.entry_name(wasm)
        path = self.directory / f"{name}.cwasm"
        module = self._read(engine, key, name, path, where)
        if module is not None:
            self.last = "hit"
            return module
        if progress is not None:
            progress(f"compiling {where} ({len(wasm) // 1024} KiB; cached for next time)")
        module = compile_module(engine, wasm, where)
        self._write(path, key, name, bytes(module.serialize()))
        return module

    def _read(
        self, engine: wasmtime.Engine, key: bytes, name: str, path: Path, where: str
    ) -> wasmtime.Module | None:
        try:
            blob = path.read_bytes()
        except OSError:
            self.last = "miss"
            return None
        head = len(MAGIC) + _TAG
        payload = blob[head:]
        if blob[: len(MAGIC)] != MAGIC or not hmac.compare_digest(
            blob[len(MAGIC) : head], _tag(key, name, payload)
        ):
            self._discard(path, where, "fails authentication (not written by this Donjon)")
            return None
        try:
            return wasmtime.Module.deserialize(engine, payload)
        except wasmtime.WasmtimeError:
            self._discard(path, where, "is authentic but the engine cannot load it")
            return None

    def _discard(self, path: Path, where: str, why: str) -> None:
        self.last = "corrupt"
        log.warning(
            "module cache: the entry for %s %s; discarded, recompiling (%s)", where, why, path
        )
        with contextlib.suppress(OSError):
            path.unlink()

    def _write(self, path: Path, key: bytes, name: str, payload: bytes) -> None:
        """Best effort: a read-only or full cache directory must not fail the run."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            blob = MAGIC + _tag(key, name, payload) + payload
            write_bytes(path, blob, mode=0o600, durable=False, prefix=".tmp-", suffix=".cwasm")
        except OSError:
            pass


def _tag(key: bytes, name: str, payload: bytes) -> bytes:
    """Binds the payload to its entry name: another module's entry copied here fails."""
    mac = hmac.new(key, MAGIC + name.encode() + b"\0", hashlib.sha256)
    mac.update(payload)
    return mac.digest()
