"""``poll_oneoff`` (being written: answers ENOSYS for now)."""

from __future__ import annotations

from donjon.wasi import abi
from donjon.wasi.context import HostContext


class PollCalls:
    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    def poll_oneoff(self, *_args: int) -> int:
        return abi.ENOSYS
