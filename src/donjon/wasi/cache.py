"""Compiled-module cache: ``Module.serialize`` output on disk, keyed by engine and module.

Loading a serialized module takes well under a millisecond against 100+ ms to
compile. A serialized module is native code that the engine runs as it is, so
the cache directory is untrusted input: whoever can write it could otherwise
plant code under a good module's name. Each entry therefore carries a MAC over
its name (libwasmtime build, engine flags, the module's digest) and its
payload, under a random key that only Donjon holds: 32 bytes, mode 0600, in the
state directory (not the cache directory), made on first use. An entry that
fails the check (planted, copied from another module's name, truncated, or
written under another key) is discarded with a warning and the module is
recompiled. A key that cannot be made or trusted (someone else's, readable by
others, the wrong size) turns the cache off for the run, with a warning. Files
are written atomically, so concurrent runs never see half a file.

Up to 2 MiB, digest and MAC are BLAKE2b-256, the MAC in BLAKE2b's own keyed
mode (a MAC by design, RFC 7693): BLAKE2b is built into the interpreter, while
SHA-256 and HMAC through ``hashlib`` first load OpenSSL, a few milliseconds of
every start. Above 2 MiB, where OpenSSL's faster SHA-256 repays that, they are
SHA-256 and HMAC-SHA-256. The choice depends only on the input's length, so a
name or a tag never changes for the same bytes. ``logging``, ``tempfile`` and
``pathlib`` are loaded only when needed.
"""

from __future__ import annotations

import errno
import os
import stat
from _operator import _compare_digest

from donjon.statedir import default_state_path
from donjon.wasi import capi
from donjon.wasi.errors import ModuleError

try:
    from _blake2 import blake2b  # what hashlib.blake2b is, without loading OpenSSL
except ImportError:  # pragma: no cover - an interpreter without the built-in module
    from hashlib import blake2b

#: ``typing`` and ``pathlib`` cost milliseconds to import; mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from donjon.wasi.api import StrPath

MAGIC = b"DJMC3\0"
_TAG = 32
#: inputs up to this size are digested and MACed with BLAKE2b, larger ones through OpenSSL
SMALL_INPUT = 2 << 20
#: The MAC key's file name in the state directory.
KEY_NAME = "module-cache.key"
KEY_BYTES = 32


class CacheKeyError(Exception):
    """The cache's MAC key cannot be made or trusted; the cache is off for this run."""


def _warn(message: str, *args: object) -> None:
    import logging  # a warning is rare; the import costs milliseconds

    logging.getLogger("donjon.wasi").warning(message, *args)


def default_cache_dir() -> Path:
    """``$DONJON_CACHE_DIR``, else ``$XDG_CACHE_HOME/donjon/modules``, else ``~/.cache/...``."""
    from pathlib import Path

    return Path(default_cache_path())


def default_cache_path() -> str:
    """:func:`default_cache_dir` as a string, without importing ``pathlib``."""
    explicit = os.environ.get("DONJON_CACHE_DIR")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "donjon", "modules")


def default_key_file() -> str:
    """``module-cache.key`` in the state directory (``$DONJON_STATE_DIR``, ...)."""
    return os.path.join(default_state_path(), KEY_NAME)


def engine_identity() -> str:
    """Names the exact libwasmtime in use; a new build changes every key."""
    st = os.stat(capi.LIBRARY)
    return f"{os.path.basename(capi.LIBRARY)}:{st.st_size}:{st.st_mtime_ns}"


def compile_module(engine: capi.Engine, wasm: bytes, where: str) -> capi.Module:
    """Compile, turning the engine's multi-line error into one line naming the file."""
    if wasm[:4] != b"\0asm":
        raise ModuleError(f"{where}: not a WebAssembly module (bad magic number)")
    try:
        return capi.Module.compile(engine, wasm)
    except capi.WasmtimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModuleError(f"{where}: invalid WebAssembly module: {detail}") from exc


def read_key(path: StrPath) -> bytes | None:
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


def load_key(path: StrPath) -> bytes:
    """The cache's MAC key, made (0600, atomically) on first use.

    Two runs that start together agree on one key: the new key is written to a
    private temporary file and hard-linked into place, which fails if another
    run's key got there first; that key is then read instead.
    """
    existing = read_key(path)
    if existing is not None:
        return existing
    import tempfile  # only the first run makes the key

    folder = os.path.dirname(os.fspath(path)) or "."
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".module-cache-key.", dir=folder)
    except OSError as exc:
        raise CacheKeyError(f"{path}: cannot create: {exc.strerror or exc}") from None
    key = os.urandom(KEY_BYTES)  # what secrets.token_bytes returns
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
        try:  # noqa: SIM105 (contextlib costs milliseconds to import)
            os.unlink(tmp)
        except OSError:
            pass
    found = read_key(path)
    if found is None:
        raise CacheKeyError(f"{path}: vanished while it was being created")
    return found


def _create_exclusive(path: StrPath, key: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)


class ModuleCache:
    def __init__(
        self, directory: StrPath, engine_flags: str, key_file: StrPath | None = None
    ) -> None:
        self.directory = os.fspath(directory)
        self.engine_flags = engine_flags
        self.key_file = os.fspath(key_file) if key_file is not None else default_key_file()
        #: what the last :meth:`load` did: "hit", "miss", "corrupt" (an entry failed its
        #: check and was replaced) or "off" (no usable key: compiled, nothing cached)
        self.last = ""

    def entry_name(self, wasm: bytes) -> str:
        """The format is part of the name: entries of another Donjon version sharing the
        directory are never read (nor warned about), only this format's."""
        parts = (engine_identity(), self.engine_flags, _digest(wasm))
        named = MAGIC + b"".join(part.encode() + b"\0" for part in parts)
        return blake2b(named, digest_size=32).hexdigest()

    def path_for(self, wasm: bytes) -> Path:
        """The entry's path (for tools and tests; a run itself never needs ``pathlib``)."""
        from pathlib import Path

        return Path(self.directory, f"{self.entry_name(wasm)}.cwasm")

    def load(
        self,
        engine: capi.Engine,
        wasm: bytes,
        where: str,
        progress: Callable[[str], None] | None = None,
    ) -> capi.Module:
        try:
            key = load_key(self.key_file)
        except CacheKeyError as exc:
            _warn("module cache off for this run: %s", exc)
            self.last = "off"
            if progress is not None:
                progress(f"compiling {where} ({len(wasm) // 1024} KiB)")
            return compile_module(engine, wasm, where)
        name = self.entry_name(wasm)
        path = os.path.join(self.directory, f"{name}.cwasm")
        module = self._read(engine, key, name, path, where)
        if module is not None:
            self.last = "hit"
            return module
        if progress is not None:
            progress(f"compiling {where} ({len(wasm) // 1024} KiB; cached for next time)")
        module = compile_module(engine, wasm, where)
        self._write(path, key, name, module.serialize())
        return module

    def _read(
        self, engine: capi.Engine, key: bytes, name: str, path: str, where: str
    ) -> capi.Module | None:
        try:
            with open(path, "rb") as file:
                blob = file.read()
        except OSError:
            self.last = "miss"
            return None
        head = len(MAGIC) + _TAG
        payload = blob[head:]
        if blob[: len(MAGIC)] != MAGIC or not _same(
            blob[len(MAGIC) : head], _tag(key, name, payload)
        ):
            self._discard(path, where, "fails authentication (not written by this Donjon)")
            return None
        try:
            return capi.Module.deserialize(engine, payload)
        except capi.WasmtimeError:
            self._discard(path, where, "is authentic but the engine cannot load it")
            return None

    def _discard(self, path: str, where: str, why: str) -> None:
        self.last = "corrupt"
        _warn("module cache: the entry for %s %s; discarded, recompiling (%s)", where, why, path)
        try:  # noqa: SIM105 (contextlib costs milliseconds to import)
            os.unlink(path)
        except OSError:
            pass

    def _write(self, path: str, key: bytes, name: str, payload: bytes) -> None:
        """Best effort: a read-only or full cache directory must not fail the run."""
        from pathlib import Path

        from donjon.atomicfile import write_bytes  # tempfile and shutil: only on a miss

        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            blob = MAGIC + _tag(key, name, payload) + payload
            target = Path(path)
            write_bytes(target, blob, mode=0o600, durable=False, prefix=".tmp-", suffix=".cwasm")
        except OSError:
            pass


def _digest(data: bytes) -> str:
    """``blake2b:<hex>`` or ``sha256:<hex>``, chosen by the length of ``data``."""
    if len(data) <= SMALL_INPUT:
        return "blake2b:" + blake2b(data, digest_size=32).hexdigest()
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tag(key: bytes, name: str, payload: bytes) -> bytes:
    """Binds the payload to its entry name: another module's entry copied here fails."""
    label = MAGIC + name.encode() + b"\0"
    if len(payload) <= SMALL_INPUT:
        mac = blake2b(key=key, digest_size=_TAG, person=b"donjon-cwasm")
        mac.update(label)
        mac.update(payload)
        return mac.digest()
    import hashlib
    import hmac

    keyed = hmac.new(key, label, hashlib.sha256)
    keyed.update(payload)
    return keyed.digest()


def _same(a: bytes, b: bytes) -> bool:
    """Constant-time comparison: what ``hmac.compare_digest`` falls back to, without
    importing ``hmac`` (which loads OpenSSL)."""
    return _compare_digest(a, b)
