"""What a caller hands the WASI host: the contract between ``donjon.wasi`` and the Keep.

The Keep (or ``donjon run-wasm``) describes a run with a :class:`RunSpec` and
calls :func:`donjon.wasi.run`. The fd table is laid out in this order, which
wasi-libc's preopen scan requires:

* fds 0, 1, 2: ``stdin``, ``stdout``, ``stderr`` (:class:`Stdio`);
* then every :class:`Preopen` directory, in order;
* then every entry of ``RunSpec.streams``, in order: listeners
  (:class:`Listener`) and connected byte streams (:class:`ByteStream`).

Sockets are opened by the caller, possibly TLS-wrapped; the WASI layer never
learns about certificates. It treats a stream as bytes, and for an
``ssl.SSLSocket`` counts ``pending()`` bytes as readable in ``poll_oneoff``.

These are small value classes written out by hand, not dataclasses: ``donjon
run-wasm`` imports this module on every start, and ``dataclasses``, ``enum``,
``pathlib`` and ``typing`` together cost more than the rest of a hello-world run
(``bench/wasi_startup.py``). Paths may be ``str`` or ``os.PathLike``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # ``typing`` costs milliseconds to import; mypy reads this as True
if TYPE_CHECKING:
    import os
    from collections.abc import Mapping
    from typing import Any, BinaryIO

    from donjon.wasi.streams import ByteStream as ByteStream
    from donjon.wasi.streams import Listener as Listener

    StrPath = str | os.PathLike[str]


def __getattr__(name: str) -> Any:
    """``ByteStream`` and ``Listener`` come from :mod:`donjon.wasi.streams` when first asked."""
    if name in ("ByteStream", "Listener"):
        from donjon.wasi import streams

        return getattr(streams, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Value:
    """Equality, hashing and repr over ``__slots__``; instances are frozen after ``__init__``."""

    __slots__ = ()

    def _values(self) -> tuple[Any, ...]:
        names: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, name) for name in names)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Value)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")


def _init(obj: _Value, **values: object) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)


class _Kind(str):
    """A ``StdioKind`` member: a plain string that also answers ``.value`` and ``.name``."""

    __slots__ = ()

    @property
    def value(self) -> str:
        return str(self)

    @property
    def name(self) -> str:
        return self.upper()


class StdioKind:
    """Where one of fds 0-2 comes from (string constants, as an enum's members would be)."""

    INHERIT = _Kind("inherit")  # the host process's own fd 0/1/2
    NULL = _Kind("null")  # reads give EOF, writes are discarded
    FILE = _Kind("file")  # a host file at ``path``
    STREAM = _Kind("stream")  # an already-open binary file object or pipe (``stream``)


class Stdio(_Value):
    __slots__ = ("kind", "path", "stream")
    kind: _Kind
    path: StrPath | None
    stream: BinaryIO | None

    def __init__(
        self,
        kind: str = StdioKind.INHERIT,
        path: StrPath | None = None,
        stream: BinaryIO | None = None,
    ) -> None:
        if kind not in (StdioKind.INHERIT, StdioKind.NULL, StdioKind.FILE, StdioKind.STREAM):
            raise ValueError(f"unknown stdio kind {kind!r}")
        _init(self, kind=_Kind(kind), path=path, stream=stream)

    def __hash__(self) -> int:
        return hash((self.kind, self.path, id(self.stream)))


class Preopen(_Value):
    """A host directory the guest sees at ``guest_path``; nothing outside it is reachable."""

    __slots__ = ("guest_path", "host_path", "writable")
    host_path: StrPath
    guest_path: str
    writable: bool

    def __init__(self, host_path: StrPath, guest_path: str, writable: bool = True) -> None:
        _init(self, host_path=host_path, guest_path=guest_path, writable=writable)


class MemoryDir(_Value):
    """A read-only directory held in memory, preopened at ``guest_path``.

    ``files`` maps plain names (no ``/``) to contents. Nothing of it exists on the
    host's file system; the guest can open, read, seek, stat and list, never write.
    """

    __slots__ = ("files", "guest_path")
    guest_path: str
    files: Mapping[str, bytes]

    def __init__(self, guest_path: str, files: Mapping[str, bytes]) -> None:
        _init(self, guest_path=guest_path, files=files)

    def __repr__(self) -> str:  # the contents may be secrets
        return f"MemoryDir(guest_path={self.guest_path!r}, files=<{len(self.files)} files>)"

    def __hash__(self) -> int:
        return hash((self.guest_path, tuple(sorted(self.files))))


class MemoryFile(_Value):
    """A read-only file held in memory, at its position among ``RunSpec.streams``."""

    __slots__ = ("data",)
    data: bytes

    def __init__(self, data: bytes) -> None:
        _init(self, data=data)

    def __repr__(self) -> str:  # the contents may be secrets
        return f"MemoryFile(<{len(self.data)} bytes>)"


class Limits(_Value):
    """Resource limits. ``None`` means unlimited.

    ``timeout_s`` is the wall-clock limit for the whole run (CPU loops are
    stopped by epoch interruption); ``blocking_call_timeout_s`` is the deadline
    for one blocking host call (accept, recv, send, poll) when the guest gave none.
    """

    __slots__ = ("blocking_call_timeout_s", "memory_bytes", "timeout_s")
    memory_bytes: int | None
    timeout_s: float | None
    blocking_call_timeout_s: float | None

    def __init__(
        self,
        memory_bytes: int | None = None,
        timeout_s: float | None = None,
        blocking_call_timeout_s: float | None = None,
    ) -> None:
        _init(
            self,
            memory_bytes=memory_bytes,
            timeout_s=timeout_s,
            blocking_call_timeout_s=blocking_call_timeout_s,
        )


class RunSpec:
    """Everything the WASI host needs to run one module (mutable, like the dataclass it was)."""

    __slots__ = (
        "args",
        "cache_dir",
        "cache_key_file",
        "env",
        "limits",
        "module",
        "module_bytes",
        "preopens",
        "stderr",
        "stdin",
        "stdout",
        "streams",
    )

    def __init__(
        self,
        module: StrPath,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        stdin: Stdio | None = None,
        stdout: Stdio | None = None,
        stderr: Stdio | None = None,
        preopens: list[Preopen | MemoryDir] | None = None,
        streams: list[Listener | ByteStream | MemoryFile] | None = None,
        limits: Limits | None = None,
        cache_dir: StrPath | None = None,
        module_bytes: bytes | None = None,
        cache_key_file: StrPath | None = None,
    ) -> None:
        self.module = module
        #: argv, argv[0] included
        self.args: list[str] = [] if args is None else args
        self.env: dict[str, str] = {} if env is None else env
        self.stdin = Stdio() if stdin is None else stdin
        self.stdout = Stdio() if stdout is None else stdout
        self.stderr = Stdio() if stderr is None else stderr
        self.preopens: list[Preopen | MemoryDir] = [] if preopens is None else preopens
        self.streams: list[Listener | ByteStream | MemoryFile] = (
            [] if streams is None else streams
        )
        self.limits = Limits() if limits is None else limits
        #: Directory of the compiled-module cache; ``None`` disables it.
        self.cache_dir = cache_dir
        #: The module's bytes, already read by the caller (a Keep hashed and attested them);
        #: then ``module`` only names it in messages and is never read again.
        self.module_bytes = module_bytes
        #: The cache's key file (see ``donjon.wasi.cache``); ``None``: the default one.
        self.cache_key_file = cache_key_file

    def __eq__(self, other: object) -> bool:
        if type(other) is not RunSpec:
            return NotImplemented
        assert isinstance(other, RunSpec)
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        names = [n for n in self.__slots__ if n != "module_bytes"]  # may be megabytes
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"RunSpec({fields})"


class RunResult(_Value):
    """How a run ended: the exit code, and one line naming the trap when the guest trapped."""

    __slots__ = ("exit_code", "trap")
    exit_code: int
    trap: str | None

    def __init__(self, exit_code: int, trap: str | None = None) -> None:
        _init(self, exit_code=exit_code, trap=trap)
