"""Compiled-module cache: ``Module.serialize`` output on disk, keyed by engine and module.

Loading a serialized module takes well under a millisecond against 100+ ms to
compile. A serialized module is native code, so each file carries the SHA-256
of its payload: a truncated or corrupted file is detected, recompiled and
replaced instead of being handed to the engine. Files are written atomically
(temporary file + ``os.replace``), so concurrent runs never see half a file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import wasmtime
from wasmtime import _ffi as ffi

from donjon.atomicfile import write_bytes
from donjon.wasi.errors import ModuleError

MAGIC = b"DJMC1\0"
_DIGEST = 32


def default_cache_dir() -> Path:
    """``$DONJON_CACHE_DIR``, else ``$XDG_CACHE_HOME/donjon/modules``, else ``~/.cache/...``."""
    explicit = os.environ.get("DONJON_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "donjon" / "modules"


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


class ModuleCache:
    def __init__(self, directory: Path, engine_flags: str) -> None:
        self.directory = directory
        self.engine_flags = engine_flags
        #: what the last :meth:`load` did: "hit", "miss" or "corrupt"
        self.last = ""

    def path_for(self, wasm: bytes) -> Path:
        key = hashlib.sha256()
        for part in (engine_identity(), self.engine_flags, hashlib.sha256(wasm).hexdigest()):
            key.update(part.encode() + b"\0")
        return self.directory / f"{key.hexdigest()}.cwasm"

    def load(
        self,
        engine: wasmtime.Engine,
        wasm: bytes,
        where: str,
        progress: Callable[[str], None] | None = None,
    ) -> wasmtime.Module:
        path = self.path_for(wasm)
        module = self._read(engine, path)
        if module is not None:
            self.last = "hit"
            return module
        if progress is not None:
            progress(f"compiling {where} ({len(wasm) // 1024} KiB; cached for next time)")
        module = compile_module(engine, wasm, where)
        self._write(path, bytes(module.serialize()))
        return module

    def _read(self, engine: wasmtime.Engine, path: Path) -> wasmtime.Module | None:
        try:
            blob = path.read_bytes()
        except OSError:
            self.last = "miss"
            return None
        head = len(MAGIC) + _DIGEST
        payload = blob[head:]
        if (
            blob[: len(MAGIC)] != MAGIC
            or hashlib.sha256(payload).digest() != blob[len(MAGIC) : head]
        ):
            self.last = "corrupt"
            return None
        try:
            return wasmtime.Module.deserialize(engine, payload)
        except wasmtime.WasmtimeError:
            self.last = "corrupt"
            return None

    def _write(self, path: Path, payload: bytes) -> None:
        """Best effort: a read-only or full cache directory must not fail the run."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            blob = MAGIC + hashlib.sha256(payload).digest() + payload
            write_bytes(path, blob, mode=0o600, durable=False, prefix=".tmp-", suffix=".cwasm")
        except OSError:
            pass
