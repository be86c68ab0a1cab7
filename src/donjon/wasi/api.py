"""What a caller hands the WASI host: the contract between ``donjon.wasi`` and the Keep.

The Keep (or ``donjon run-wasm``) describes a run with a :class:`RunSpec` and
calls :func:`donjon.wasi.run`. The fd table is laid out in this order, which
wasi-libc's preopen scan requires:

* fds 0, 1, 2: ``stdin``, ``stdout``, ``stderr`` (:class:`Stdio`);
* then every :class:`Preopen` directory (or in-memory :class:`MemoryDir`), in order;
* then every entry of ``RunSpec.streams``, in order: listeners
  (:class:`Listener`), connected byte streams (:class:`ByteStream`) and
  read-only in-memory files (:class:`MemoryFile`).

Sockets are opened by the caller, possibly TLS-wrapped; the WASI layer never
learns about certificates. It treats a stream as bytes, and for an
``ssl.SSLSocket`` counts ``pending()`` bytes as readable in ``poll_oneoff``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable


class StdioKind(Enum):
    INHERIT = "inherit"  # the host process's own fd 0/1/2
    NULL = "null"  # reads give EOF, writes are discarded
    FILE = "file"  # a host file at ``path``
    STREAM = "stream"  # an already-open binary file object or pipe (``stream``)


@dataclass(frozen=True)
class Stdio:
    kind: StdioKind = StdioKind.INHERIT
    path: Path | None = None
    stream: BinaryIO | None = None


@dataclass(frozen=True)
class Preopen:
    """A host directory the guest sees at ``guest_path``; nothing outside it is reachable."""

    host_path: Path
    guest_path: str
    writable: bool = True


@dataclass(frozen=True)
class MemoryDir:
    """A read-only directory held in memory, preopened at ``guest_path``.

    ``files`` maps plain names (no ``/``) to contents. Nothing of it exists on the
    host's file system; the guest can open, read, seek, stat and list, never write.
    """

    guest_path: str
    files: Mapping[str, bytes] = field(repr=False)


@dataclass(frozen=True)
class MemoryFile:
    """A read-only file held in memory, at its position among ``RunSpec.streams``."""

    data: bytes = field(repr=False)


ByteStream = socket.socket | ssl.SSLSocket
"""A connected stream socket; an SSLSocket has finished its handshake."""


@runtime_checkable
class Listener(Protocol):
    """A source of accepted connections for ``sock_accept``.

    A plain listening ``socket.socket`` satisfies it. A TLS listener is an object
    of the Keep's that does handshakes off the guest's path: ``fileno()`` turns
    readable when a connection is ready, and ``accept()`` then returns it.
    """

    def fileno(self) -> int: ...

    def accept(self) -> tuple[ByteStream, object]: ...

    def setblocking(self, flag: bool) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Limits:
    """Resource limits. ``None`` means unlimited."""

    memory_bytes: int | None = None
    #: Wall-clock limit for the whole run; CPU loops are stopped by epoch interruption.
    timeout_s: float | None = None
    #: Deadline for one blocking host call (accept, recv, send, poll) when the guest gave none.
    blocking_call_timeout_s: float | None = None


@dataclass
class RunSpec:
    """Everything the WASI host needs to run one module."""

    module: Path
    args: list[str] = field(default_factory=list)  # argv, argv[0] included
    env: dict[str, str] = field(default_factory=dict)
    stdin: Stdio = field(default_factory=Stdio)
    stdout: Stdio = field(default_factory=Stdio)
    stderr: Stdio = field(default_factory=Stdio)
    preopens: list[Preopen | MemoryDir] = field(default_factory=list)
    streams: list[Listener | ByteStream | MemoryFile] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    #: Directory of the compiled-module cache; ``None`` disables it.
    cache_dir: Path | None = None
    #: The module's bytes, already read by the caller (a Keep hashed and attested them);
    #: then ``module`` only names it in messages and is never read again.
    module_bytes: bytes | None = field(default=None, repr=False)
    #: The cache's HMAC key file (see ``donjon.wasi.cache``); ``None``: the default one.
    cache_key_file: Path | None = None


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    #: One line naming the trap, when the guest trapped (exit code 134).
    trap: str | None = None
