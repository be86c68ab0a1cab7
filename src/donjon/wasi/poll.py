"""``poll_oneoff``: clock, fd_read and fd_write subscriptions.

Readiness comes from the host's ``poll``/``select`` on the entries' host fds,
with two exceptions: regular files (and Python streams) are always ready, and
an ``ssl.SSLSocket`` with ``pending()`` bytes is readable without asking the
kernel, since those bytes were already taken off the socket by OpenSSL. The
wait obeys the run deadline and the per-call limit like every blocking call.
"""

from __future__ import annotations

import select
import ssl
import time
from dataclasses import dataclass

from donjon.wasi import abi
from donjon.wasi.context import USE_POLL, HostContext
from donjon.wasi.errors import WasiError
from donjon.wasi.fdtable import KIND_FILE, KIND_PYSTREAM, KIND_SOCKET, FdEntry

_ALWAYS_READY = (abi.FILETYPE_REGULAR_FILE, abi.FILETYPE_DIRECTORY, abi.FILETYPE_BLOCK_DEVICE)


@dataclass(slots=True)
class _FdSub:
    userdata: int
    kind: int  # EVENTTYPE_FD_READ or EVENTTYPE_FD_WRITE
    entry: FdEntry


def _monotonic_deadline(clock: int, timeout: int, flags: int) -> float:
    """Convert a clock subscription to a ``time.monotonic()`` instant."""
    now_mono = time.monotonic()
    if not flags & abi.SUBCLOCKFLAGS_ABSTIME:
        return now_mono + timeout / 1e9
    if clock == abi.CLOCK_REALTIME:
        return now_mono + (timeout - time.time_ns()) / 1e9
    return now_mono + (timeout - time.monotonic_ns()) / 1e9


class PollCalls:
    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    def poll_oneoff(self, in_ptr: int, out_ptr: int, nsubs: int, nevents_ptr: int) -> int:
        if nsubs == 0:
            raise WasiError(abi.EINVAL)
        mem = self.ctx.mem
        mem.check(in_ptr, nsubs * abi.SUBSCRIPTION.size)
        mem.check(out_ptr, nsubs * abi.EVENT.size)
        mem.set_u32(nevents_ptr, 0)
        clocks: list[tuple[float, int]] = []
        fd_subs: list[_FdSub] = []
        for i in range(nsubs):
            userdata, tag, body = abi.SUBSCRIPTION.unpack_from(mem.view, in_ptr + 48 * i)
            if tag == abi.EVENTTYPE_CLOCK:
                clock, timeout, _precision, flags = abi.SUBSCRIPTION_CLOCK.unpack(body)
                if clock not in (abi.CLOCK_REALTIME, abi.CLOCK_MONOTONIC):
                    raise WasiError(abi.EINVAL if clock > 3 else abi.ENOTSUP)
                if flags & ~abi.SUBCLOCKFLAGS_ABSTIME:
                    raise WasiError(abi.EINVAL)
                clocks.append((_monotonic_deadline(clock, timeout, flags), userdata))
            elif tag in (abi.EVENTTYPE_FD_READ, abi.EVENTTYPE_FD_WRITE):
                (fd,) = abi.SUBSCRIPTION_FD.unpack(body)
                entry = self.ctx.fds.get(fd)
                entry.require(abi.RIGHT_POLL_FD_READWRITE)
                fd_subs.append(_FdSub(userdata, tag, entry))
            else:
                raise WasiError(abi.EINVAL)

        events = self._wait(clocks, fd_subs)
        for index, event in enumerate(events):
            abi.EVENT.pack_into(mem.view, out_ptr + 32 * index, *event)
        mem.set_u32(nevents_ptr, len(events))
        return abi.SUCCESS

    def _wait(
        self, clocks: list[tuple[float, int]], fd_subs: list[_FdSub]
    ) -> list[tuple[int, int, int, int, int]]:
        earliest = min((deadline for deadline, _ in clocks), default=None)
        call_deadline = None if earliest is not None else self.ctx.call_deadline()
        while True:
            now = time.monotonic()
            events = self._ready_now(fd_subs)
            if events:
                return events
            if earliest is not None and now >= earliest:
                return [
                    (userdata, 0, abi.EVENTTYPE_CLOCK, 0, 0)
                    for deadline, userdata in clocks
                    if deadline <= earliest
                ][:1]
            until = earliest if earliest is not None else call_deadline
            if self.ctx.deadline is not None:
                until = self.ctx.deadline if until is None else min(until, self.ctx.deadline)
            timeout = None if until is None else max(0.0, until - now)
            events = self._poll(fd_subs, timeout)
            if events:
                return events
            self.ctx.check_deadline()
            if earliest is None and call_deadline is not None and time.monotonic() >= call_deadline:
                raise WasiError(abi.ETIMEDOUT)

    def _ready_now(self, fd_subs: list[_FdSub]) -> list[tuple[int, int, int, int, int]]:
        """Events that need no kernel poll: files, Python streams, TLS bytes already read."""
        events = []
        for sub in fd_subs:
            entry = sub.entry
            if entry.kind == KIND_PYSTREAM or (
                entry.kind == KIND_FILE and entry.filetype in _ALWAYS_READY
            ):
                events.append((sub.userdata, 0, sub.kind, 0, 0))
            elif sub.kind == abi.EVENTTYPE_FD_READ and entry.kind == KIND_SOCKET:
                pending = len(entry.rbuf)
                if isinstance(entry.sock, ssl.SSLSocket):
                    pending += entry.sock.pending()
                if pending:
                    events.append((sub.userdata, 0, sub.kind, pending, 0))
        return events

    def _poll(
        self, fd_subs: list[_FdSub], timeout: float | None
    ) -> list[tuple[int, int, int, int, int]]:
        """One kernel wait over the fd subscriptions (or a plain sleep when there are none)."""
        if not fd_subs:
            if timeout is None:
                raise WasiError(abi.EINVAL)  # nothing could ever wake us
            time.sleep(timeout)
            return []
        if USE_POLL:
            poller = select.poll()
            masks: dict[int, int] = {}
            for sub in fd_subs:
                bit = select.POLLIN if sub.kind == abi.EVENTTYPE_FD_READ else select.POLLOUT
                masks[sub.entry.hostfd] = masks.get(sub.entry.hostfd, 0) | bit
            for hostfd, mask in masks.items():
                poller.register(hostfd, mask)
            ms = None if timeout is None else int(timeout * 1000 + 0.999)
            revents = dict(poller.poll(ms))
        else:  # macOS
            reads = [s.entry.hostfd for s in fd_subs if s.kind == abi.EVENTTYPE_FD_READ]
            writes = [s.entry.hostfd for s in fd_subs if s.kind == abi.EVENTTYPE_FD_WRITE]
            r, w, _ = select.select(reads, writes, [], timeout)
            revents = {fd: select.POLLIN for fd in r}
            for fd in w:
                revents[fd] = revents.get(fd, 0) | select.POLLOUT
        events = []
        for sub in fd_subs:
            got = revents.get(sub.entry.hostfd, 0)
            hangup = got & (select.POLLHUP | select.POLLERR)
            wanted = select.POLLIN if sub.kind == abi.EVENTTYPE_FD_READ else select.POLLOUT
            if got & wanted or hangup:
                flags = abi.EVENTRWFLAGS_FD_READWRITE_HANGUP if hangup else 0
                events.append((sub.userdata, 0, sub.kind, 1 if got & wanted else 0, flags))
        return events
