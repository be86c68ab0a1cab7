"""The socket types a caller may hand the WASI host in ``RunSpec.streams``.

Kept apart from :mod:`donjon.wasi.api` because ``socket``, ``ssl`` and
``typing`` cost milliseconds to import, which a run without sockets (most of
``donjon run-wasm``'s) never needs. ``api`` re-exports both names on first use.
"""

from __future__ import annotations

import socket
import ssl
from typing import Protocol, runtime_checkable

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
