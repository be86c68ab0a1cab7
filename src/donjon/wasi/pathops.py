"""``path_*`` calls (being written: every call answers ENOSYS for now)."""

from __future__ import annotations

from typing import Any

from donjon.wasi import abi
from donjon.wasi.context import HostContext


class PathCalls:
    def __init__(self, ctx: HostContext) -> None:
        self.ctx = ctx

    def __getattr__(self, name: str) -> Any:
        if name.startswith("path_"):
            return lambda *_args: abi.ENOSYS
        raise AttributeError(name)
