"""A TLS listener for tests: the Keep-side object that ``RunSpec.streams`` accepts.

Handshakes run on a background thread, off the guest's path. ``fileno()`` is the
read end of a socketpair that gets one byte per finished handshake, so the WASI
host's ``poll_oneoff`` sees the listener readable exactly when ``accept()`` has
a connection to hand over. The guest only ever sees plaintext.
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import queue
import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway P-256 certificate for localhost and 127.0.0.1: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    return ctx


def client_context(cert: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cafile=cert)
    return ctx


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
