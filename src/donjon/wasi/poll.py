"""``poll_oneoff``: clock, fd_read and fd_write subscriptions.

Readiness comes from the host's ``poll``/``select`` on the entries' host fds,
with two exceptions: regular files (and Python streams) are always ready, and
an ``ssl.SSLSocket`` with ``pending()`` bytes is readable without asking the
kernel, since those bytes were already taken off the socket by OpenSSL. The
wait obeys the run deadline and the per-call limit like every blocking call.
"""

from __future__ import annotations

import select
import struct
import time

from donjon.wasi import abi
from donjon.wasi.context import USE_POLL, HostContext
from donjon.wasi.errors import WasiError
from donjon.wasi.fdtable import (
    KIND_FILE,
    KIND_MEMDIR,
    KIND_MEMFILE,
    KIND_PYSTREAM,
    KIND_SOCKET,
    FdEntry,
)

_ALWAYS_READY = (abi.FILETYPE_REGULAR_FILE, abi.FILETYPE_DIRECTORY, abi.FILETYPE_BLOCK_DEVICE)
_ALWAYS_READY_KINDS = (KIND_PYSTREAM, KIND_MEMFILE, KIND_MEMDIR)

#: One subscription decoded in a single step: userdata, tag, then the union read as a
#: clock (id, timeout, precision, flags). For fd subscriptions the id is the fd and the
#: rest is padding, ignored.
_SUBSCRIPTION = struct.Struct("<QB7xI4xQQH6x")
assert _SUBSCRIPTION.size == abi.SUBSCRIPTION.size
_FD_READ = abi.EVENTTYPE_FD_READ
_FD_WRITE = abi.EVENTTYPE_FD_WRITE
_POLL_RIGHT = abi.RIGHT_POLL_FD_READWRITE
#: Errors count as ready (the next call reports them); POLLNVAL too, or a wait would spin.
_HANGUP = select.POLLHUP | select.POLLERR | select.POLLNVAL

#: (userdata, EVENTTYPE_FD_READ or EVENTTYPE_FD_WRITE, entry)
_FdSub = tuple[int, int, FdEntry]
_Event = tuple[int, int, int, int, int]


def _monotonic_deadline(clock: int, timeout: int, flags: int) -> float:
    """Convert a clock subscription to a ``time.monotonic()`` instant."""
    now_mono = time.monotonic()
    if not flags & abi.SUBCLOCKFLAGS_ABSTIME:
        return now_mono + timeout / 1e9
    if clock == abi.CLOCK_REALTIME:
        return now_mono + (timeout - time.time_ns()) / 1e9
    return now_mono + (timeout - time.monotonic_ns()) / 1e9


class PollCalls:
    """``poll_oneoff``. A guest event loop calls it once per wakeup, so it is hot:
    subscriptions are decoded in one pass, and the kernel poll object is kept while
    the guest keeps asking about the same fds."""

    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx
        #: the (host fd, event type) pairs ``_poller`` was registered for
        self._poll_key: tuple[tuple[int, int], ...] = ()
        self._poller: select.poll | None = None

    def poll_oneoff(self, in_ptr: int, out_ptr: int, nsubs: int, nevents_ptr: int) -> int:
        if nsubs == 0:
            raise WasiError(abi.EINVAL)
        ctx = self.ctx
        mem = ctx.mem
        mem.check(in_ptr, nsubs * 48)
        mem.check(out_ptr, nsubs * 32)
        mem.set_u32(nevents_ptr, 0)
        clocks: list[tuple[float, int]] = []
        fd_subs: list[_FdSub] = []
        get = ctx.fds.get
        raw = mem.view[in_ptr : in_ptr + 48 * nsubs]
        for userdata, tag, ident, timeout, _precision, flags in _SUBSCRIPTION.iter_unpack(raw):
            if tag in (_FD_READ, _FD_WRITE):
                entry = get(ident)
                if entry.rights_base & _POLL_RIGHT != _POLL_RIGHT:
                    raise WasiError(abi.ENOTCAPABLE)
                fd_subs.append((userdata, tag, entry))
            elif tag == abi.EVENTTYPE_CLOCK:
                if ident not in (abi.CLOCK_REALTIME, abi.CLOCK_MONOTONIC):
                    raise WasiError(abi.EINVAL if ident > 3 else abi.ENOTSUP)
                if flags & ~abi.SUBCLOCKFLAGS_ABSTIME:
                    raise WasiError(abi.EINVAL)
                clocks.append((_monotonic_deadline(ident, timeout, flags), userdata))
            else:
                raise WasiError(abi.EINVAL)
        raw.release()

        events = self._wait(clocks, fd_subs)
        view = mem.view
        pack = abi.EVENT.pack_into
        for index, event in enumerate(events):
            pack(view, out_ptr + 32 * index, *event)
        mem.set_u32(nevents_ptr, len(events))
        return abi.SUCCESS

    def _wait(self, clocks: list[tuple[float, int]], fd_subs: list[_FdSub]) -> list[_Event]:
        ctx = self.ctx
        earliest = None
        call_deadline = None
        if clocks:
            earliest = min(deadline for deadline, _ in clocks)
        elif ctx.bounded:
            call_deadline = ctx.call_deadline()
        while True:
            events = self._ready_now(fd_subs)
            if events:
                return events
            if earliest is None and call_deadline is None and ctx.deadline is None:
                # The common case of an event loop: wait for the fds alone, no clock.
                events = self._poll(fd_subs, None)
                if events:
                    return events
                continue
            now = time.monotonic()
            if earliest is not None and now >= earliest:
                return [
                    (userdata, 0, abi.EVENTTYPE_CLOCK, 0, 0)
                    for deadline, userdata in clocks
                    if deadline <= earliest
                ][:1]
            until = earliest if earliest is not None else call_deadline
            if ctx.deadline is not None:
                until = ctx.deadline if until is None else min(until, ctx.deadline)
            timeout = None if until is None else max(0.0, until - now)
            events = self._poll(fd_subs, timeout)
            if events:
                return events
            ctx.check_deadline()
            if earliest is None and call_deadline is not None and time.monotonic() >= call_deadline:
                raise WasiError(abi.ETIMEDOUT)

    @staticmethod
    def _ready_now(fd_subs: list[_FdSub]) -> list[_Event]:
        """Events that need no kernel poll: files, Python streams, TLS bytes already read."""
        events: list[_Event] = []
        for userdata, tag, entry in fd_subs:
            kind = entry.kind
            if kind == KIND_SOCKET:
                if tag == _FD_READ:
                    pending = len(entry.rbuf)
                    if entry.tls:
                        pending += entry.sock.pending()
                    if pending:
                        events.append((userdata, 0, tag, pending, 0))
            elif kind in _ALWAYS_READY_KINDS or (
                kind == KIND_FILE and entry.filetype in _ALWAYS_READY
            ):
                events.append((userdata, 0, tag, 0, 0))
        return events

    def _poll(self, fd_subs: list[_FdSub], timeout: float | None) -> list[_Event]:
        """One kernel wait over the fd subscriptions (or a plain sleep when there are none)."""
        if not fd_subs:
            if timeout is None:
                raise WasiError(abi.EINVAL)  # nothing could ever wake us
            time.sleep(timeout)
            return []
        if USE_POLL:
            key = tuple([(entry.hostfd, tag) for _, tag, entry in fd_subs])
            poller = self._poller
            if poller is None or key != self._poll_key:
                # poll(2) names fds by number, so a kept poller stays right for the same key.
                masks: dict[int, int] = {}
                for hostfd, tag in key:
                    bit = select.POLLIN if tag == _FD_READ else select.POLLOUT
                    masks[hostfd] = masks.get(hostfd, 0) | bit
                poller = select.poll()
                for hostfd, mask in masks.items():
                    poller.register(hostfd, mask)
                self._poller, self._poll_key = poller, key
            ms = None if timeout is None else int(timeout * 1000 + 0.999)
            revents = dict(poller.poll(ms))
        else:  # macOS
            reads = [e.hostfd for _, tag, e in fd_subs if tag == _FD_READ]
            writes = [e.hostfd for _, tag, e in fd_subs if tag == _FD_WRITE]
            r, w, _ = select.select(reads, writes, [], timeout)
            revents = {fd: select.POLLIN for fd in r}
            for fd in w:
                revents[fd] = revents.get(fd, 0) | select.POLLOUT
        if not revents:
            return []
        events: list[_Event] = []
        for userdata, tag, entry in fd_subs:
            got = revents.get(entry.hostfd, 0)
            if not got:
                continue
            hangup = got & _HANGUP
            wanted = select.POLLIN if tag == _FD_READ else select.POLLOUT
            if got & wanted or hangup:
                flags = abi.EVENTRWFLAGS_FD_READWRITE_HANGUP if hangup else 0
                events.append((userdata, 0, tag, 1 if got & wanted else 0, flags))
        return events
