"""What a Keep checks before it creates anything: a key, a certificate, a file.

``donjon run`` on a 0-byte ``main.wasm`` used to make a key, ask for (or sign) a
certificate and write it out, and only then fail to compile the module. These
checks are cheap (wasm validation, no compilation) and run first, so bad input
leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

from donjon.errors import UsageError
from donjon.wasi.errors import ModuleError


def check_module(wasm: bytes, path: Path) -> None:
    """Refuse a ``main.wasm`` that is not a valid WebAssembly module, in one line.

    ``wasm`` is the package's one read of the file (what is attested and compiled);
    ``path`` only names it."""
    if not wasm:
        raise ModuleError(f"{path}: empty file (0 bytes), not a WebAssembly module")
    if wasm[:4] != b"\0asm":
        raise ModuleError(f"{path}: not a WebAssembly module (bad magic number)")
    import wasmtime  # deferred: the slow import of start-up, needed to run anyway

    try:
        wasmtime.Module.validate(wasmtime.Engine(), wasm)
    except wasmtime.WasmtimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModuleError(f"{path}: invalid WebAssembly module: {detail}") from exc


def check_export_target(path: Path) -> None:
    """``--export-cert`` writes into an existing directory; it never creates one."""
    directory = path.parent
    if path.is_dir():
        raise UsageError(f"--export-cert {path}: is a directory; name a file")
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise UsageError(f"--export-cert {path}: the directory {directory} {what}")
