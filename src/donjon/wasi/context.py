"""State shared by all host functions of one run, and the blocking-wait helper.

Epoch interruption cannot stop a guest that sits inside a host call, so every
host operation that may block (a read on a pipe, accept, recv, send, poll)
waits through :meth:`HostContext.wait`, which honours both the per-call limit
(``Limits.blocking_call_timeout_s``) and the run's deadline.
"""

from __future__ import annotations

import select
import sys
import time

from donjon.wasi import abi
from donjon.wasi.api import Limits
from donjon.wasi.errors import DeadlineExceeded, WasiError

#: ``typing`` costs milliseconds to import; mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from donjon.wasi.fdtable import FdTable
    from donjon.wasi.memory import GuestMemory

#: poll(2) where it works for every fd type; macOS's poll() refuses ttys and devices
#: (POLLNVAL), so there select(2) is used instead.
USE_POLL = hasattr(select, "poll") and sys.platform != "darwin"


class HostContext:
    """State shared by all host functions of one run."""

    __slots__ = ("args", "deadline", "env", "fds", "limits", "memory")

    def __init__(
        self,
        args: list[bytes],
        env: list[bytes],
        fds: FdTable,
        limits: Limits | None = None,
        deadline: float | None = None,
        memory: GuestMemory | None = None,
    ) -> None:
        if limits is None:
            limits = Limits()
        self.args = args
        self.env = env
        self.fds = fds
        self.limits = limits
        #: monotonic time at which the whole run must stop (None: never)
        self.deadline = deadline
        self.memory = memory
        self.fds.set_watch(self.bounded)

    @property
    def mem(self) -> GuestMemory:
        memory = self.memory
        if memory is None:
            # A host call before the instance's memory is known (from a start function).
            raise WasiError(abi.EFAULT)
        return memory

    def set_deadline(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.fds.set_watch(self.bounded)

    @property
    def bounded(self) -> bool:
        """Whether blocking calls must be watched (any limit set)."""
        return self.deadline is not None or self.limits.blocking_call_timeout_s is not None

    def call_deadline(self, timeout: float | None = None) -> float | None:
        """The moment a blocking call started now must give up."""
        now = time.monotonic()
        candidates = [d for d in (self.deadline,) if d is not None]
        if self.limits.blocking_call_timeout_s is not None:
            candidates.append(now + self.limits.blocking_call_timeout_s)
        if timeout is not None:
            candidates.append(now + timeout)
        return min(candidates) if candidates else None

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineExceeded()

    def wait(self, hostfd: int, write: bool, until: float | None) -> None:
        """Block until ``hostfd`` is ready, or raise: DeadlineExceeded / ETIMEDOUT."""
        while True:
            remaining = None if until is None else max(0.0, until - time.monotonic())
            if ready(hostfd, write, remaining):
                return
            self.check_deadline()
            if until is not None and time.monotonic() >= until:
                raise WasiError(abi.ETIMEDOUT)


def ready(hostfd: int, write: bool, timeout: float | None) -> bool:
    """One poll of one fd; errors and hang-ups count as ready (the next call reports them)."""
    if USE_POLL:
        poller = select.poll()
        poller.register(hostfd, select.POLLOUT if write else select.POLLIN)
        ms = None if timeout is None else int(timeout * 1000 + 0.999)
        return bool(poller.poll(ms))
    if write:
        _, w, x = select.select([], [hostfd], [hostfd], timeout)
        return bool(w or x)
    r, _, x = select.select([hostfd], [], [hostfd], timeout)
    return bool(r or x)
