"""Zero-copy, bounds-checked access to the guest's linear memory.

The engine is configured with ``memory_may_move = False``, so the base address
never changes; only the length grows. We keep one ``memoryview`` over the
current length and rebuild it when an access goes past it (the memory may have
grown since). Slicing a memoryview silently truncates, so every slice is
checked first: an out-of-bounds pointer from the guest becomes ``EFAULT``,
never a host read past the mapping.
"""

from __future__ import annotations

import ctypes

from donjon.wasi import abi
from donjon.wasi.errors import WasiError

#: ``typing`` and ``collections`` cost milliseconds to import; mypy reads this as True
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_IOVEC = abi.IOVEC.unpack_from
_U32 = abi.U32


class GuestMemory:
    """The guest's exported ``memory``, seen as one writable memoryview."""

    __slots__ = ("_base", "_length", "size", "view", "words")

    def __init__(self, base: Callable[[], int], length: Callable[[], int]) -> None:
        self._base = base
        self._length = length
        self.size = 0
        self.view = memoryview(bytearray(0))
        #: the same memory as native u32 words (little endian on every supported host)
        self.words = self.view.cast("I")
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the view over the memory's current length."""
        size = self._length()
        if size == self.size and size:
            return
        base = self._base()
        if size == 0 or not base:
            self.view = memoryview(bytearray(0))
            self.words = self.view.cast("I")
            self.size = 0
            return
        array = (ctypes.c_ubyte * size).from_address(base)
        self.view = memoryview(array).cast("B")
        self.words = self.view.cast("I")
        self.size = size

    def check(self, ptr: int, length: int) -> None:
        """Raise EFAULT unless ``[ptr, ptr + length)`` is inside memory."""
        end = ptr + length
        if end > self.size:
            self.refresh()
            if end > self.size:
                raise WasiError(abi.EFAULT)

    def slice(self, ptr: int, length: int) -> memoryview:
        end = ptr + length
        if end > self.size:
            self.check(ptr, length)
        return self.view[ptr:end]

    def read_bytes(self, ptr: int, length: int) -> bytes:
        return bytes(self.slice(ptr, length))

    def write_bytes(self, ptr: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        end = ptr + n
        if end > self.size:
            self.check(ptr, n)
        self.view[ptr:end] = data

    def u32(self, ptr: int) -> int:
        if ptr + 4 > self.size:
            self.check(ptr, 4)
        value: int = _U32.unpack_from(self.view, ptr)[0]
        return value

    def set_u32(self, ptr: int, value: int) -> None:
        if ptr + 4 > self.size:
            self.check(ptr, 4)
        if ptr & 3:
            raise WasiError(abi.EINVAL)  # wasmtime refuses unaligned result pointers too
        _U32.pack_into(self.view, ptr, value)

    def set_u64(self, ptr: int, value: int) -> None:
        if ptr + 8 > self.size:
            self.check(ptr, 8)
        if ptr & 7:
            raise WasiError(abi.EINVAL)
        abi.U64.pack_into(self.view, ptr, value)

    def iovecs(self, iovs: int, count: int) -> list[memoryview]:
        """The guest's iovec array as memoryview slices, ready for ``os.readv``/``os.writev``."""
        total = 8 * count
        if iovs + total > self.size:
            self.check(iovs, total)
        view = self.view
        out = []
        for i in range(count):
            buf, length = _IOVEC(view, iovs + 8 * i)
            end = buf + length
            if end > self.size:
                self.check(buf, length)
                view = self.view  # check() may have rebuilt the view after memory.grow
            out.append(view[buf:end])
        return out
