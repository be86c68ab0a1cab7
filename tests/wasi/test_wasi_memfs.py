"""Read-only in-memory files and directories (``MemoryDir``, ``MemoryFile``) seen by a guest.

The guest (built from tests/deploy/programs/secret_reader.c) opens, reads,
stats and lists them through wasi-libc, and cannot open them for writing.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from donjon import wasi
from donjon.wasi.api import MemoryDir, MemoryFile, RunSpec, Stdio, StdioKind

PROGRAM = Path(__file__).resolve().parents[1] / "deploy" / "programs" / "secret_reader.c"


def test_a_guest_reads_in_memory_secrets_and_cannot_write_them(
    build_wasm: Callable[[Path], Path],
) -> None:
    module = build_wasm(PROGRAM)
    out = io.BytesIO()
    spec = RunSpec(
        module=module,
        args=["main.wasm"],
        env={"FD_NAMES": "stdin:stdout:stderr:/run/secrets/db:API_KEY", "DB_PASSWORD": "envpw"},
        stdout=Stdio(StdioKind.STREAM, stream=out),
        stderr=Stdio(StdioKind.STREAM, stream=io.BytesIO()),
        preopens=[MemoryDir("/run/secrets", {"db": b"s3cret\n", "other": b"x"})],
        streams=[MemoryFile(b"key-42")],
        module_bytes=module.read_bytes(),
    )
    result = wasi.run(spec)
    text = out.getvalue().decode()
    assert result.exit_code == 0, text
    assert "db=s3cret\n\nsize=7\n" in text
    assert "writable=0\n" in text
    assert "listing=db,other,\n" in text
    assert "api_key=key-42\n" in text
    assert "env=envpw\n" in text
