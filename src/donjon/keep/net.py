"""The Keep's sockets: listeners bound and peers connected before the workload starts.

TLS is the Keep's job; the guest sees plaintext. A :class:`TlsListener` accepts
raw connections and runs handshakes on a worker thread with a selector, so a
slow or hostile client never holds up another: a connection reaches the guest
only once its handshake has finished, and one that fails is dropped and logged.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from donjon.attestation.peer import PeerError, PeerExpectations
from donjon.errors import DonjonError
from donjon.escape import escape
from donjon.keep.config import ConnectFile, ListenFile, Prot
from donjon.keep.config_peer import Revocation
from donjon.keep.peercheck import connect_expectations
from donjon.keep.revocation import CrlCache, CrlUnavailableError, current_crl
from donjon.keep.tls import ClientTls, PinMismatch

log = logging.getLogger("donjon.keep.net")

BACKLOG = 128
HANDSHAKE_TIMEOUT_S = 10.0
#: Handshakes in flight at once; more connections wait in the kernel's backlog.
MAX_PENDING_HANDSHAKES = 256
#: Handshaken connections the guest has not accepted yet (also bounds the wakeup pipe).
MAX_READY = 1024
#: Linux only: a one-shot "acknowledge now" (see :func:`ack_now`).
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class NetError(DonjonError):
    """A socket the workload asked for could not be set up."""


class ListenError(NetError):
    """A listen address that cannot be bound (in use, not local, no permission)."""


class ConnectError(NetError):
    """A connect entry whose peer could not be reached or failed TLS."""


class PeerRefused(ConnectError):
    """The peer's attested claims do not meet the entry's ``expect_*`` (never retried).

    ``code`` is the relying-party check that failed (``peer.workload``, ``peer.platform``,
    ``peer.development``, ``peer.debug``, ``peer.no_attestation``, ...).
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _describe(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this host"
    return exc.strerror or str(exc)


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bind(addr: str, port: int) -> socket.socket:
    """A listening TCP socket. ``::`` is dual-stack, falling back to IPv4 where IPv6 is absent."""
    if addr in ("::", ""):
        try:
            return _listen(socket.AF_INET6, ("::", port), dual_stack=True)
        except OSError as exc:
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT):
                raise
            return _listen(socket.AF_INET, ("0.0.0.0", port), dual_stack=False)
    infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return _listen(family, sockaddr, dual_stack=False)


def _listen(family: int, sockaddr: tuple[object, ...], dual_stack: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def listen(entry: ListenFile, label: str) -> socket.socket:
    """Bind one ``listen`` entry; errors name the entry and the address."""
    port = entry.effective_port()
    try:
        return bind(entry.addr, port)
    except socket.gaierror as exc:
        raise ListenError(f"{label}: cannot resolve addr {entry.addr!r}: {exc.strerror}") from exc
    except OSError as exc:
        raise ListenError(
            f"{label}: cannot listen on {hostport(entry.addr, port)}: {_describe(exc)}"
        ) from exc


@dataclass(frozen=True)
class ConnectPlan:
    host: str
    port: int
    timeout_s: float
    retries: int
    retry_delay_s: float
    #: What the peer's certificate must attest (``expect_workload``/``expect_platform``/...).
    expect: PeerExpectations | None = None
    #: The Steward's CRL, checked when ``expect`` is set; None: revocation not checked.
    crl: CrlCache | None = None
    revocation: Revocation = Revocation.REQUIRED


def plan(
    entry: ConnectFile,
    crl: CrlCache | None = None,
    *,
    has_steward: bool,
    base_dir: Path | None = None,
) -> ConnectPlan:
    """``crl`` is the Keep's own Steward's: the runner gives it for ``trust = "steward"``.

    ``has_steward``: the config names a Steward, so an entry without ``trust`` trusts it.
    """
    expect = expectations(entry, has_steward=has_steward, base_dir=base_dir)
    return ConnectPlan(
        entry.host,
        entry.effective_port(),
        entry.connect_timeout,
        entry.retries,
        entry.retry_delay,
        expect,
        crl if expect is not None else None,
        entry.revocation,
    )


def expectations(
    entry: ConnectFile, *, has_steward: bool, base_dir: Path | None = None
) -> PeerExpectations | None:
    """The relying-party expectations of one ``connect`` entry, if it has any (see
    :func:`donjon.keep.peercheck.connect_expectations`)."""
    return connect_expectations(entry, has_steward=has_steward, base_dir=base_dir)


def connect(
    target: ConnectPlan, tls: ClientTls | None, label: str
) -> socket.socket | ssl.SSLSocket:
    """Connect (and handshake) with retries; the result is blocking, ready for the guest."""
    if target.expect is not None and tls is None:
        raise ConnectError(f'{label}: expect_workload/expect_platform need prot = "tls"')
    crl = None
    if target.expect is not None:
        # Before dialling: a peer that cannot be checked is not worth a connection.
        try:
            crl = current_crl(target.crl, target.revocation, label)
        except CrlUnavailableError as exc:
            raise PeerRefused(
                f"{label}: cannot check the peer's revocation: {exc}", exc.code
            ) from exc
    last: Exception | None = None
    for attempt in range(target.retries + 1):
        if attempt:
            time.sleep(target.retry_delay_s * attempt)
        try:
            raw = socket.create_connection((target.host, target.port), timeout=target.timeout_s)
        except OSError as exc:
            last = exc
            log.info("%s: connect attempt %d failed: %s", label, attempt + 1, exc)
            continue
        if tls is None:
            raw.settimeout(None)
            return raw
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: ssl.SSLSocket | None = None
        try:
            # The connect timeout bounds the handshake as well.
            sock = tls.context.wrap_socket(
                raw, server_hostname=tls.server_name, suppress_ragged_eofs=True
            )
            tls.check_peer(sock)
            if target.expect is not None:
                tls.check_attestation(sock, target.expect, crl=crl)
        except PinMismatch as exc:
            _close(raw, sock)
            raise ConnectError(f"{label}: {exc}") from exc
        except PeerError as exc:
            # Closed before the guest could see a byte; the Keep does not start.
            _close(raw, sock)
            raise PeerRefused(
                f"{label}: peer {hostport(target.host, target.port)} refused: {exc}", exc.code
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            _close(raw, sock)
            raise ConnectError(
                f"{label}: TLS peer {hostport(target.host, target.port)} is not trusted: "
                f"{exc.verify_message}"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            _close(raw, sock)
            last = exc
            log.info("%s: TLS attempt %d failed: %s", label, attempt + 1, exc)
            continue
        sock.settimeout(None)
        return sock
    what = _describe(last) if isinstance(last, OSError) and last.errno else str(last)
    raise ConnectError(
        f"{label}: cannot connect to {hostport(target.host, target.port)} after "
        f"{target.retries + 1} attempt(s): {what}"
    )


def _close(raw: socket.socket, sock: ssl.SSLSocket | None) -> None:
    """Close a connection that failed; ``wrap_socket`` moved the fd from ``raw`` to ``sock``."""
    raw.close()
    if sock is not None:
        sock.close()


@dataclass
class _Pending:
    sock: ssl.SSLSocket
    addr: object
    deadline: float


class TlsListener:
    """A listener whose ``accept()`` returns only handshaken TLS connections.

    Implements :class:`donjon.wasi.api.Listener`. ``fileno()`` is the read end
    of a pipe that holds one byte per connection ready to accept, so it polls
    readable exactly when ``accept()`` would not block.
    """

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        *,
        name: str = "listener",
        handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
        verify: Callable[[ssl.SSLSocket], object] | None = None,
    ) -> None:
        self.name = name
        #: Checks each client after its handshake (e.g. its attested workload); raising
        #: drops the client before the guest sees it.
        self._verify = verify
        self._sock = sock
        self._context = context
        self._handshake_timeout_s = handshake_timeout_s
        self._ready: collections.deque[tuple[ssl.SSLSocket, object]] = collections.deque()
        self._lock = threading.Lock()
        self._ready_r, self._ready_w = os.pipe()
        self._stop_r, self._stop_w = os.pipe()
        # The guest's accept() wakes a paused worker through this pipe: no polling tick.
        self._room_r, self._room_w = os.pipe()
        for fd in self._pipes():
            os.set_inheritable(fd, False)
        os.set_blocking(self._ready_r, False)
        os.set_blocking(self._room_r, False)
        os.set_blocking(self._room_w, False)
        #: the worker stopped accepting (back-pressure); guarded by ``_lock``
        self._paused = False
        self._timeout: float | None = None  # blocking, like a fresh socket
        self._closed = False
        self.handshakes_ok = 0
        self.handshakes_failed = 0
        self.clients_refused = 0
        self._sock.setblocking(False)
        self._thread = threading.Thread(target=self._serve, name=f"donjon-tls-{name}", daemon=True)
        self._thread.start()

    # -- the Listener protocol ------------------------------------------------------------

    def fileno(self) -> int:
        return self._ready_r

    def getsockname(self) -> object:
        return self._sock.getsockname()

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def settimeout(self, value: float | None) -> None:
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def accept(self) -> tuple[ssl.SSLSocket, object]:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            if self._closed:
                raise OSError(errno.EBADF, "listener is closed")
            try:
                os.read(self._ready_r, 1)
            except BlockingIOError:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if self._timeout == 0.0:
                        raise
                    raise TimeoutError(errno.ETIMEDOUT, "accept timed out") from None
                selectors_ = selectors.DefaultSelector()
                try:
                    selectors_.register(self._ready_r, selectors.EVENT_READ)
                    selectors_.register(self._stop_r, selectors.EVENT_READ)
                    selectors_.select(remaining)
                finally:
                    selectors_.close()
                continue
            with self._lock:
                conn, addr = self._ready.popleft()
                wake = self._paused
                self._paused = False
            if wake:
                with contextlib.suppress(BlockingIOError):  # full: a wakeup is pending anyway
                    os.write(self._room_w, b"\0")
            return conn, addr

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        with self._lock:
            while self._ready:
                self._ready.popleft()[0].close()
        for fd in self._pipes():
            os.close(fd)
        self._sock.close()

    def _pipes(self) -> tuple[int, ...]:
        return (
            self._ready_r,
            self._ready_w,
            self._stop_r,
            self._stop_w,
            self._room_r,
            self._room_w,
        )

    def __enter__(self) -> TlsListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the handshake worker ------------------------------------------------------------

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        pending: dict[int, _Pending] = {}
        sel.register(self._sock, selectors.EVENT_READ, None)
        sel.register(self._stop_r, selectors.EVENT_READ, None)
        sel.register(self._room_r, selectors.EVENT_READ, None)
        accepting = True
        try:
            while True:
                timeout = None
                if pending:
                    timeout = max(0.0, min(p.deadline for p in pending.values()) - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.fileobj == self._stop_r:
                        return
                    if key.fileobj is self._sock:
                        self._accept_raw(sel, pending)
                    elif key.fileobj == self._room_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._room_r, 4096)
                    else:
                        self._step(sel, pending, key.fd)
                self._expire(sel, pending)
                # Back-pressure: past the limit, new clients wait in the kernel's backlog.
                # Deciding under the lock that accept() takes means a guest accept either
                # lands before (and is counted) or sees _paused and wakes us.
                with self._lock:
                    queued = len(self._ready)
                    full = len(pending) >= MAX_PENDING_HANDSHAKES or queued >= MAX_READY
                    self._paused = queued >= MAX_READY
                if full and accepting:
                    sel.unregister(self._sock)
                elif not full and not accepting:
                    sel.register(self._sock, selectors.EVENT_READ, None)
                accepting = not full
        except Exception:  # pragma: no cover - a bug here must not die silently
            log.exception("%s: TLS accept loop failed", self.name)
        finally:
            for item in pending.values():
                item.sock.close()
            sel.close()

    def _accept_raw(self, sel: selectors.BaseSelector, pending: dict[int, _Pending]) -> None:
        for _ in range(64):  # drain a burst without starving handshakes in progress
            try:
                raw, addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s: accept failed: %s", self.name, exc)
                return
            raw.setblocking(False)
            # TLS writes whole records; Nagle would hold a record's tail for a delayed ACK.
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                conn = self._context.wrap_socket(
                    raw, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=True
                )
            except (OSError, ssl.SSLError) as exc:
                raw.close()
                self._failed(addr, exc)
                continue
            item = _Pending(conn, addr, time.monotonic() + self._handshake_timeout_s)
            pending[conn.fileno()] = item
            sel.register(conn, selectors.EVENT_READ, None)
            self._step(sel, pending, conn.fileno())

    def _step(self, sel: selectors.BaseSelector, pending: dict[int, _Pending], fd: int) -> None:
        item = pending.get(fd)
        if item is None:  # an event for a connection dropped earlier in this round
            return
        try:
            item.sock.do_handshake()
        except ssl.SSLWantReadError:
            sel.modify(item.sock, selectors.EVENT_READ, None)
            return
        except ssl.SSLWantWriteError:
            sel.modify(item.sock, selectors.EVENT_WRITE, None)
            return
        except (OSError, ssl.SSLError, ValueError) as exc:
            sel.unregister(item.sock)
            del pending[fd]
            item.sock.close()
            self._failed(item.addr, exc)
            return
        sel.unregister(item.sock)
        del pending[fd]
        if self._verify is not None and not self._verified(item):
            return
        ack_now(item.sock)
        item.sock.setblocking(True)
        self.handshakes_ok += 1
        with self._lock:
            self._ready.append((item.sock, item.addr))
        os.write(self._ready_w, b"\1")

    def _verified(self, item: _Pending) -> bool:
        try:
            assert self._verify is not None
            self._verify(item.sock)
        except Exception as exc:  # fail closed: a check that cannot finish refuses
            self.clients_refused += 1
            code = getattr(exc, "code", None) or type(exc).__name__
            # The reason may quote the client's certificate (a package name, an advisory).
            log.warning(
                "%s: refused TLS client %s: %s [%s]",
                self.name,
                _peer(item.addr),
                escape(str(exc)),
                escape(str(code)),
            )
            item.sock.close()
            return False
        return True

    def _expire(self, sel: selectors.BaseSelector, pending: dict[int, _Pending]) -> None:
        now = time.monotonic()
        for fd, item in list(pending.items()):
            if item.deadline <= now:
                sel.unregister(item.sock)
                del pending[fd]
                item.sock.close()
                self._failed(item.addr, TimeoutError("handshake timed out"))

    def _failed(self, addr: object, exc: BaseException) -> None:
        self.handshakes_failed += 1
        reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
        log.warning("%s: dropped TLS client %s: %s", self.name, addr, escape(str(reason)))


def _peer(addr: object) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return hostport(str(addr[0]), int(addr[1]))
    return str(addr)


def ack_now(sock: socket.socket) -> None:
    """Acknowledge the client's last handshake flight at once instead of ~40 ms later.

    Without session tickets a TLS 1.3 server has nothing to send after the client's
    Finished, so the kernel delays its ACK (40 ms minimum on Linux). A client that
    leaves Nagle on (many HTTP clients, Python's ``ssl`` by default) holds its first
    request until that ACK: every new connection paid ~40 ms before its first byte.
    ``TCP_QUICKACK`` sends the pending ACK now; it is one-shot, later ACKs are as usual.
    """
    if _TCP_QUICKACK is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


def open_listener(
    entry: ListenFile,
    label: str,
    context: ssl.SSLContext | None,
    verify: Callable[[ssl.SSLSocket], object] | None = None,
) -> socket.socket | TlsListener:
    """Bind ``entry`` and, for ``prot = "tls"``, put a :class:`TlsListener` in front of it."""
    sock = listen(entry, label)
    if entry.prot is Prot.TCP:
        return sock
    if context is None:
        sock.close()
        raise ListenError(f'{label}: prot = "tls" but the Keep has no TLS context')
    return TlsListener(sock, context, name=entry.name, verify=verify)
