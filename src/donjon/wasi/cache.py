"""Compiled-module cache: ``Module.serialize`` output on disk, keyed by engine and module.

Loading a serialized module takes well under a millisecond against 100+ ms to
compile. A serialized module is native code, so each file carries a digest
of its payload: a truncated or corrupted file is detected, recompiled and
replaced instead of being handed to the engine. Files are written atomically
(temporary file + ``os.replace``), so concurrent runs never see half a file.

Digests are BLAKE2b-256 up to 4 MiB and SHA-256 above: BLAKE2b is built into
the interpreter, while ``hashlib``'s SHA-256 first loads OpenSSL (about 3 ms
of every start), which pays off only for big inputs. The choice depends only on
the input's length, so a key never changes for the same content.
"""

from __future__ import annotations

import os

from donjon.wasi import capi
from donjon.wasi.errors import ModuleError

#: ``typing`` and ``pathlib`` cost milliseconds to import; mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from donjon.wasi.api import StrPath

MAGIC = b"DJMC2\0"
_DIGEST = 32
#: inputs up to this size are digested with BLAKE2b, larger ones with SHA-256
SMALL_INPUT = 4 << 20


def content_digest(data: bytes) -> tuple[str, bytes]:
    """(algorithm, 32-byte digest) of ``data``, the algorithm chosen by its length."""
    if len(data) <= SMALL_INPUT:
        try:
            from _blake2 import blake2b  # what hashlib.blake2b is, without loading OpenSSL
        except ImportError:  # pragma: no cover - an interpreter without the built-in module
            from hashlib import blake2b
        return "blake2b-256", blake2b(data, digest_size=_DIGEST).digest()
    import hashlib

    return "sha256", hashlib.sha256(data).digest()


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


class ModuleCache:
    def __init__(self, directory: StrPath, engine_flags: str) -> None:
        self.directory = os.fspath(directory)
        self.engine_flags = engine_flags
        #: what the last :meth:`load` did: "hit", "miss" or "corrupt"
        self.last = ""

    def path_for(self, wasm: bytes) -> str:
        algorithm, digest = content_digest(wasm)
        parts = (engine_identity(), self.engine_flags, f"{algorithm}:{digest.hex()}")
        _, key = content_digest(b"".join(part.encode() + b"\0" for part in parts))
        return os.path.join(self.directory, f"{key.hex()}.cwasm")

    def load(
        self,
        engine: capi.Engine,
        wasm: bytes,
        where: str,
        progress: Callable[[str], None] | None = None,
    ) -> capi.Module:
        path = self.path_for(wasm)
        module = self._read(engine, path)
        if module is not None:
            self.last = "hit"
            return module
        if progress is not None:
            progress(f"compiling {where} ({len(wasm) // 1024} KiB; cached for next time)")
        module = compile_module(engine, wasm, where)
        self._write(path, module.serialize())
        return module

    def _read(self, engine: capi.Engine, path: str) -> capi.Module | None:
        try:
            with open(path, "rb") as file:
                blob = file.read()
        except OSError:
            self.last = "miss"
            return None
        head = len(MAGIC) + _DIGEST
        payload = blob[head:]
        if blob[: len(MAGIC)] != MAGIC or content_digest(payload)[1] != blob[len(MAGIC) : head]:
            self.last = "corrupt"
            return None
        try:
            return capi.Module.deserialize(engine, payload)
        except capi.WasmtimeError:
            self.last = "corrupt"
            return None

    def _write(self, path: str, payload: bytes) -> None:
        """Best effort: a read-only or full cache directory must not fail the run."""
        from pathlib import Path

        from donjon.atomicfile import write_bytes  # tempfile and shutil: only on a miss

        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            blob = MAGIC + content_digest(payload)[1] + payload
            write_bytes(
                Path(path), blob, mode=0o600, durable=False, prefix=".tmp-", suffix=".cwasm"
            )
        except OSError:
            pass
