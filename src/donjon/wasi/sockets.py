"""``sock_*`` calls, and socket reads/writes for ``fd_read``/``fd_write``.

Host sockets are always non-blocking; whether the *guest* blocks is the
``NONBLOCK`` fdflag we keep. A blocking call waits with a deadline (see
:meth:`HostContext.wait`), so a guest stuck in ``accept`` still obeys the run's
timeout. TLS sockets are ``ssl.SSLSocket``: ``SSLWantRead/WriteError`` means
"wait and retry", and ``pending()`` bytes are read without waiting.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl

from donjon.wasi import abi
from donjon.wasi.context import HostContext, ready
from donjon.wasi.errors import WasiError
from donjon.wasi.fdtable import KIND_LISTENER, KIND_SOCKET, FdEntry, socket_entry

#: iovecs one readv/writev takes everywhere (POSIX IOV_MAX is at least 1024 on our hosts).
_IOV_MAX = 1024


class SocketCalls:
    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    def _socket(self, fd: int) -> FdEntry:
        entry = self.ctx.fds.get(fd)
        if entry.kind != KIND_SOCKET:
            raise WasiError(abi.ENOTSOCK)
        return entry

    def _block(self, entry: FdEntry, write: bool, until: float | None) -> None:
        if entry.flags & abi.FDFLAGS_NONBLOCK:
            raise WasiError(abi.EAGAIN)
        self.ctx.wait(entry.hostfd, write, until)

    def recv(self, entry: FdEntry, bufs: list[memoryview], flags: int) -> int:
        """Read into ``bufs``: a short read is always allowed (WAITALL is the caller's loop).

        ``RECV_PEEK`` reads ahead into ``entry.rbuf`` and copies without consuming;
        later reads drain that buffer first.
        """
        if entry.kind != KIND_SOCKET:
            raise WasiError(abi.ENOTSOCK if entry.kind != KIND_LISTENER else abi.ENOTCONN)
        rbuf = entry.rbuf
        if not flags and not rbuf and type(entry.sock) is socket.socket and len(bufs) <= _IOV_MAX:
            # The hot path of a plain stream: one readv fills every iovec, no copy.
            try:
                return os.readv(entry.hostfd, bufs)
            except BlockingIOError:
                pass  # nothing yet: wait below, as the fd's flags say
        total = sum(len(b) for b in bufs)
        if total == 0:
            return 0
        if flags & abi.RIFLAGS_RECV_PEEK:
            want = total if flags & abi.RIFLAGS_RECV_WAITALL else 1
            until: float | None = None
            while len(rbuf) < want:
                if until is None:
                    until = self.ctx.call_deadline()
                chunk = bytearray(min(max(want - len(rbuf), 4096), 1 << 16))
                try:
                    got = self._recv_into(entry, memoryview(chunk), until, first=not rbuf)
                except _PartialPeek:
                    break  # non-blocking: peek what there is
                if got == 0:
                    break
                rbuf += chunk[:got]
            return _scatter(rbuf, bufs, consume=False)
        if rbuf:
            return _scatter(rbuf, bufs, consume=True)
        target = next(b for b in bufs if len(b))
        return self._recv_into(entry, target, None, first=True)

    def _recv_into(
        self, entry: FdEntry, target: memoryview, until: float | None, *, first: bool
    ) -> int:
        """One successful receive into ``target`` (0 at EOF), waiting as the fd's flags say.

        ``first``: whether nothing was read yet in this call (a non-blocking guest
        gets EAGAIN only then).
        """
        sock = entry.sock
        while True:
            try:
                n: int = sock.recv_into(target)
                return n
            except ssl.SSLZeroReturnError:
                return 0
            except (BlockingIOError, ssl.SSLWantReadError):
                write = False
            except ssl.SSLWantWriteError:
                write = True
            except ssl.SSLError as exc:
                raise WasiError(abi.EIO) from exc
            if not first and entry.flags & abi.FDFLAGS_NONBLOCK:
                raise _PartialPeek()
            if until is None:
                until = self.ctx.call_deadline()
            self._block(entry, write, until)

    def send(self, entry: FdEntry, bufs: list[memoryview]) -> int:
        if entry.kind != KIND_SOCKET:
            raise WasiError(abi.ENOTSOCK if entry.kind != KIND_LISTENER else abi.ENOTCONN)
        if entry.shut_wr:
            raise WasiError(abi.EPIPE)
        sock = entry.sock
        if type(sock) is socket.socket and len(bufs) <= _IOV_MAX:
            # The hot path of a plain stream: one writev straight from guest memory.
            try:
                return os.writev(entry.hostfd, bufs)
            except BlockingIOError:
                pass  # the socket buffer is full: wait below
        plain = not isinstance(sock, ssl.SSLSocket)
        parts = [b for b in bufs if len(b)][:1024]  # a short write beats EMSGSIZE
        if not parts:
            return 0
        until: float | None = None
        first = True
        while True:
            try:
                if plain and len(parts) > 1:
                    sent: int = sock.sendmsg(parts)
                else:
                    sent = sock.send(parts[0])
                return sent
            except (BlockingIOError, ssl.SSLWantWriteError):
                write = True
            except ssl.SSLWantReadError:
                write = False
            except ssl.SSLError as exc:
                raise WasiError(abi.EIO) from exc
            if first:
                until = self.ctx.call_deadline()
                first = False
            self._block(entry, write, until)

    def sock_recv(
        self, fd: int, ri_data: int, ri_data_len: int, ri_flags: int, ro_len: int, ro_flags: int
    ) -> int:
        entry = self._socket(fd)
        entry.require(abi.RIGHT_FD_READ)
        if ri_flags & ~(abi.RIFLAGS_RECV_PEEK | abi.RIFLAGS_RECV_WAITALL):
            raise WasiError(abi.EINVAL)
        mem = self.ctx.mem
        bufs = mem.iovecs(ri_data, ri_data_len)
        n = self.recv(entry, bufs, ri_flags)
        if ri_flags & abi.RIFLAGS_RECV_WAITALL and not ri_flags & abi.RIFLAGS_RECV_PEEK:
            want = sum(len(b) for b in bufs)
            while n and n < want:
                rest = _advance(bufs, n)
                got = self.recv(entry, rest, 0)
                if got == 0:
                    break
                n += got
        mem.set_u32(ro_len, n)
        mem.check(ro_flags, 2)
        mem.view[ro_flags : ro_flags + 2] = b"\0\0"
        return abi.SUCCESS

    def sock_send(self, fd: int, si_data: int, si_data_len: int, si_flags: int, so_len: int) -> int:
        entry = self._socket(fd)
        entry.require(abi.RIGHT_FD_WRITE)
        mem = self.ctx.mem
        n = self.send(entry, mem.iovecs(si_data, si_data_len))
        mem.set_u32(so_len, n)
        return abi.SUCCESS

    def sock_shutdown(self, fd: int, how: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.kind == KIND_LISTENER:
            raise WasiError(abi.ENOTCONN)
        if entry.kind != KIND_SOCKET:
            raise WasiError(abi.ENOTSOCK)
        entry.require(abi.RIGHT_SOCK_SHUTDOWN)
        modes = {
            abi.SDFLAGS_RD: socket.SHUT_RD,
            abi.SDFLAGS_WR: socket.SHUT_WR,
            abi.SDFLAGS_RD | abi.SDFLAGS_WR: socket.SHUT_RDWR,
        }
        if how not in modes:
            raise WasiError(abi.EINVAL)
        sock = entry.sock
        if isinstance(sock, ssl.SSLSocket) and how & abi.SDFLAGS_WR and not entry.shut_wr:
            _send_close_notify(sock)
        try:
            # SSLSocket.shutdown() drops its SSL object (later reads would be raw
            # ciphertext): shut the TCP side down underneath it instead.
            socket.socket.shutdown(sock, modes[how])
        except OSError as exc:
            raise WasiError(abi.from_oserror(exc)) from exc
        if how & abi.SDFLAGS_WR:
            entry.shut_wr = True
        return abi.SUCCESS

    def sock_accept(self, fd: int, flags: int, result_fd: int) -> int:
        entry = self.ctx.fds.get(fd)
        if entry.kind == KIND_SOCKET:
            raise WasiError(abi.EINVAL)
        if entry.kind != KIND_LISTENER:
            raise WasiError(abi.ENOTSOCK)
        entry.require(abi.RIGHT_SOCK_ACCEPT)
        if flags & ~abi.FDFLAGS_NONBLOCK:
            raise WasiError(abi.EINVAL)
        mem = self.ctx.mem
        mem.check(result_fd, 4)
        until: float | None = None
        first = True
        # A Keep listener object is asked only once its fd says a connection is ready,
        # in case its accept() ignores setblocking(False).
        keep_object = not isinstance(entry.sock, socket.socket)
        while True:
            if not keep_object or ready(entry.hostfd, False, 0):
                try:
                    conn, _addr = entry.sock.accept()
                    break
                except (BlockingIOError, InterruptedError):
                    pass
            if first:
                until = self.ctx.call_deadline()
                first = False
            self._block(entry, False, until)
        new = socket_entry(conn, nonblock=bool(flags & abi.FDFLAGS_NONBLOCK))
        new.owns_fd = False
        mem.set_u32(result_fd, self.ctx.fds.add(new))
        return abi.SUCCESS


def _advance(bufs: list[memoryview], n: int) -> list[memoryview]:
    out = []
    for b in bufs:
        if n >= len(b):
            n -= len(b)
            continue
        out.append(b[n:])
        n = 0
    return out


class _PartialPeek(Exception):
    """A non-blocking peek found fewer bytes than asked: return those."""


def _scatter(rbuf: bytearray, bufs: list[memoryview], *, consume: bool) -> int:
    """Copy the start of ``rbuf`` into ``bufs``; drop what was copied when ``consume``."""
    done = 0
    for b in bufs:
        n = min(len(b), len(rbuf) - done)
        if n <= 0:
            break
        b[:n] = rbuf[done : done + n]
        done += n
    if consume:
        del rbuf[:done]
    return done


def _send_close_notify(sock: ssl.SSLSocket) -> None:
    """Send TLS close_notify but keep reading: a TLS half-close.

    On a non-blocking socket ``unwrap()`` sends close_notify, then raises
    SSLWantReadError while it would wait for the peer's; the SSL object stays in
    place, so later reads still decrypt. If the peer had already closed, unwrap
    completes and there is nothing left to read anyway.
    """
    with contextlib.suppress(OSError, ValueError):  # SSLWantReadError is an OSError
        sock.unwrap()
