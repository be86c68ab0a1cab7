"""configfs-tsm: the Linux kernel's one interface to TEE attestation reports (Linux >= 6.7).

A report request is a directory under ``/sys/kernel/config/tsm/report``::

    mkdir report/<name>           the kernel fills it with attributes
    write inblob                  64 bytes of report_data (each write bumps generation)
    read outblob                  the signed report or quote, made by the provider
    read auxblob                  optional: SEV-SNP's certificate table
    read provider                 sev_guest | tdx_guest | arm_cca_guest ...
    read generation               how many writes the entry has seen
    rmdir report/<name>

Nothing stops another process from writing into the same entry between our
write and our read, in which case outblob would answer *its* inblob. The
``generation`` counter exposes that: it must equal the number of our own
writes both before and after reading. On a mismatch we retry in a fresh entry,
then fail with a message that says so.

All file access goes through :class:`TsmFs`, so tests drive this code against a
temporary directory laid out like configfs with a fake provider behind it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from donjon.keep.platforms.base import PlatformError, PlatformUnavailable

TSM_REPORT_ROOT = Path("/sys/kernel/config/tsm/report")
DEFAULT_ATTEMPTS = 3


class TsmError(PlatformError):
    """configfs-tsm refused or failed a report request."""


class TsmRace(TsmError):
    """Another writer changed the report entry while we used it."""


class TsmNoProvider(TsmError):
    """configfs-tsm is mounted, but no TEE driver has registered as its provider."""


class TsmProviderMismatch(TsmError):
    """The kernel's provider is not the TEE this platform expects."""


class TsmFs(Protocol):
    """The five file operations configfs-tsm needs."""

    def mkdir(self, path: Path) -> None: ...

    def rmdir(self, path: Path) -> None: ...

    def read(self, path: Path) -> bytes: ...

    def write(self, path: Path, data: bytes) -> None: ...

    def is_dir(self, path: Path) -> bool: ...


class OsTsmFs:
    """The real kernel interface. Attribute writes must be a single ``write()``."""

    def mkdir(self, path: Path) -> None:
        os.mkdir(path)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def read(self, path: Path) -> bytes:
        with open(path, "rb", buffering=0) as handle:
            return handle.read()

    def write(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.EIO, f"short write ({written} of {len(data)} bytes)", str(path))

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()


@dataclass(frozen=True)
class TsmReport:
    provider: str
    outblob: bytes
    auxblob: bytes
    generation: int
    attempts: int


class ConfigfsTsm:
    """Report requests through configfs-tsm, with race detection and retries."""

    def __init__(
        self,
        root: Path = TSM_REPORT_ROOT,
        fs: TsmFs | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
    ) -> None:
        self.root = root
        self.fs: TsmFs = fs or OsTsmFs()
        self.attempts = attempts

    def present(self) -> bool:
        return self.fs.is_dir(self.root)

    def report(
        self,
        inblob: bytes,
        *,
        providers: frozenset[str],
        privlevel: int | None = None,
        want_aux: bool = False,
    ) -> TsmReport:
        """Write ``inblob`` and read back what the provider made of it.

        ``providers``: the acceptable provider names (e.g. ``{"sev_guest"}``).
        """
        if not self.present():
            raise PlatformUnavailable(
                f"configfs-tsm is not available: {self.root} does not exist "
                "(needs Linux >= 6.7 with configfs mounted and a TEE guest driver)"
            )
        last: TsmRace | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                return self._once(inblob, providers, privlevel, want_aux, attempt)
            except TsmRace as race:
                last = race
        assert last is not None
        raise TsmRace(f"{last.message}; gave up after {self.attempts} attempts")

    def _once(
        self,
        inblob: bytes,
        providers: frozenset[str],
        privlevel: int | None,
        want_aux: bool,
        attempt: int,
    ) -> TsmReport:
        entry = self._make_entry()
        try:
            provider = self._provider(entry)
            if provider not in providers:
                expected = " or ".join(sorted(providers))
                raise TsmProviderMismatch(
                    f"configfs-tsm provider is {provider!r}, expected {expected}: "
                    "this guest is not the TEE you asked for"
                )
            writes = 0
            before = self._generation(entry)
            if privlevel is not None:
                self._write(entry / "privlevel", str(privlevel).encode())
                writes += 1
            self._write(entry / "inblob", inblob)
            writes += 1
            first = self._generation(entry)
            outblob = self._read(entry / "outblob")
            auxblob = self._read_optional(entry / "auxblob") if want_aux else b""
            second = self._generation(entry)
            if first != before + writes or second != first:
                raise TsmRace(
                    f"configfs-tsm entry {entry.name}: generation went {before} -> {first} -> "
                    f"{second} across our {writes} write(s); another process wrote to it"
                )
            if not outblob:
                raise TsmError(f"configfs-tsm: {entry / 'outblob'} is empty")
            return TsmReport(provider, outblob, auxblob, second, attempt)
        finally:
            with contextlib.suppress(OSError):
                self.fs.rmdir(entry)

    def _make_entry(self) -> Path:
        for _ in range(5):
            entry = self.root / f"donjon-{os.getpid()}-{secrets.token_hex(4)}"
            try:
                self.fs.mkdir(entry)
                return entry
            except FileExistsError:
                continue
            except PermissionError:
                raise TsmError(
                    f"cannot create {entry}: permission denied "
                    "(configfs-tsm needs root or CAP_SYS_ADMIN)"
                ) from None
            except OSError as exc:
                raise TsmError(f"cannot create {entry}: {exc.strerror or exc}") from None
        raise TsmError(f"cannot create a unique entry under {self.root}")

    def _provider(self, entry: Path) -> str:
        try:
            raw = self.fs.read(entry / "provider")
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise TsmNoProvider(
                    "configfs-tsm has no TEE provider: no guest attestation driver is loaded "
                    "(sev-guest, tdx-guest) or this VM is not a confidential guest"
                ) from None
            raise TsmError(f"configfs-tsm: cannot read {entry / 'provider'}: {exc}") from None
        return raw.decode("ascii", "replace").strip()

    def _read(self, path: Path) -> bytes:
        try:
            return self.fs.read(path)
        except OSError as exc:
            raise TsmError(f"configfs-tsm: cannot read {path}: {exc.strerror or exc}") from None

    def _read_optional(self, path: Path) -> bytes:
        """An attribute that older kernels or some providers do not have."""
        try:
            return self.fs.read(path)
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise TsmError(f"configfs-tsm: cannot read {path}: {exc.strerror or exc}") from None

    def _read_text(self, path: Path) -> str:
        return self._read(path).decode("ascii", "replace").strip()

    def _write(self, path: Path, data: bytes) -> None:
        try:
            self.fs.write(path, data)
        except OSError as exc:
            raise TsmError(f"configfs-tsm: cannot write {path}: {exc.strerror or exc}") from None

    def _generation(self, entry: Path) -> int:
        text = self._read_text(entry / "generation")
        try:
            return int(text)
        except ValueError:
            raise TsmError(
                f"configfs-tsm: {entry / 'generation'} is not a number: {text!r}"
            ) from None
