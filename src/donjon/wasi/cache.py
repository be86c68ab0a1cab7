"""Compiled-module cache: ``Module.serialize`` output on disk, keyed by engine and module.

Loading a serialized module takes well under a millisecond against 100+ ms to
compile. Files are written atomically (temporary file + ``os.replace``), so
concurrent runs never see half a file.

Each file holds an exact copy of the module's bytes, then the native code
with its CRC-32. A hit is an exact byte comparison with the module being run,
so no other module can ever get this code, and nothing has to be hashed on
every start: the file name comes from the module's length and CRC-32 (a
collision only costs a compile). The CRC-32 of the native code catches a
truncated or corrupted file, which is recompiled and replaced instead of being
handed to the engine. Neither check stops someone who can write the cache
directory (0700, the user's own), who could as well write valid native code.
"""

from __future__ import annotations

import os
import struct
import zlib

from donjon.wasi import capi
from donjon.wasi.errors import ModuleError

#: ``typing`` and ``pathlib`` cost milliseconds to import; mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from donjon.wasi.api import StrPath

MAGIC = b"DJMC2\0"
#: after the magic: the length of the module copy, then the CRC-32 of the native code
_HEADER = struct.Struct("<QI")


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
        try:
            from _blake2 import blake2b  # what hashlib.blake2b is, without loading OpenSSL
        except ImportError:  # pragma: no cover - an interpreter without the built-in module
            from hashlib import blake2b
        parts = (engine_identity(), self.engine_flags, f"{len(wasm)}:{zlib.crc32(wasm):08x}")
        key = blake2b("\0".join(parts).encode(), digest_size=32).hexdigest()
        return os.path.join(self.directory, f"{key}.cwasm")

    def load(
        self,
        engine: capi.Engine,
        wasm: bytes,
        where: str,
        progress: Callable[[str], None] | None = None,
    ) -> capi.Module:
        path = self.path_for(wasm)
        module = self._read(engine, path, wasm)
        if module is not None:
            self.last = "hit"
            return module
        if progress is not None:
            progress(f"compiling {where} ({len(wasm) // 1024} KiB; cached for next time)")
        module = compile_module(engine, wasm, where)
        self._write(path, wasm, module.serialize())
        return module

    def _read(self, engine: capi.Engine, path: str, wasm: bytes) -> capi.Module | None:
        try:
            with open(path, "rb") as file:
                blob = file.read()
        except OSError:
            self.last = "miss"
            return None
        head = len(MAGIC) + _HEADER.size
        if len(blob) < head or blob[: len(MAGIC)] != MAGIC:
            self.last = "corrupt"
            return None
        size, crc = _HEADER.unpack_from(blob, len(MAGIC))
        if size != len(wasm) or blob[head : head + size] != wasm:
            self.last = "miss"  # another module with the same name, or a truncated copy
            return None
        payload = blob[head + size :]
        if zlib.crc32(payload) != crc:
            self.last = "corrupt"
            return None
        try:
            return capi.Module.deserialize(engine, payload)
        except capi.WasmtimeError:
            self.last = "corrupt"
            return None

    def _write(self, path: str, wasm: bytes, payload: bytes) -> None:
        """Best effort: a read-only or full cache directory must not fail the run."""
        from pathlib import Path

        from donjon.atomicfile import write_bytes  # tempfile and shutil: only on a miss

        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            blob = MAGIC + _HEADER.pack(len(wasm), zlib.crc32(payload)) + wasm + payload
            write_bytes(
                Path(path), blob, mode=0o600, durable=False, prefix=".tmp-", suffix=".cwasm"
            )
        except OSError:
            pass
