"""A TLS listener for tests: the Keep-side object that ``RunSpec.streams`` accepts.

Handshakes run on a background thread, off the guest's path. ``fileno()`` is the
read end of a socketpair that gets one byte per finished handshake, so the WASI
host's ``poll_oneoff`` sees the listener readable exactly when ``accept()`` has
a connection to hand over. The guest only ever sees plaintext.
"""

from __future__ import annotations

import errno
import queue
import socket
import ssl
import threading


class TlsListener:
    """Accepts TCP connections, finishes each TLS handshake, then offers it to the guest."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, handshake_timeout: float = 10.0):
        self._sock = sock
        self._ctx = ctx
        self._handshake_timeout = handshake_timeout
        self._ready: queue.Queue[tuple[ssl.SSLSocket, object]] = queue.Queue()
        self._signal_r, self._signal_w = socket.socketpair()
        self._blocking = True
        self._stop = threading.Event()
        self.failed_handshakes = 0
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name="tls-accept", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(self._handshake_timeout)
            try:
                tls = self._ctx.wrap_socket(conn, server_side=True)
            except (ssl.SSLError, OSError):
                self.failed_handshakes += 1
                conn.close()
                continue
            tls.settimeout(None)
            self._ready.put((tls, addr))
            self._signal_w.send(b"!")

    def fileno(self) -> int:
        return self._signal_r.fileno()

    def accept(self) -> tuple[ssl.SSLSocket, object]:
        if self._blocking:
            item = self._ready.get()
        else:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                raise BlockingIOError(errno.EAGAIN, "no connection ready") from None
        self._signal_r.recv(1)
        return item

    def setblocking(self, flag: bool) -> None:
        self._blocking = flag

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=2)
        self._signal_r.close()
        self._signal_w.close()
