"""The TEE guest character devices: ``/dev/sev-guest`` and ``/dev/tdx_guest`` ioctls.

These predate configfs-tsm and are still the only path on older guest kernels.
Structures and request numbers come from the Linux UAPI headers
``include/uapi/linux/sev-guest.h`` and ``include/uapi/linux/tdx-guest.h``; the
ioctl function is injectable so tests can play the kernel.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from donjon.keep.platforms.base import PlatformError, PlatformUnavailable

SEV_GUEST_DEVICE = Path("/dev/sev-guest")
TDX_GUEST_DEVICE = Path("/dev/tdx_guest")

_IOC_WRITE = 1
_IOC_READ = 2


def _iowr(kind: str, number: int, size: int) -> int:
    """Linux ``_IOWR``: direction bits 30-31, size 16-29, type 8-15, number 0-7."""
    return ((_IOC_READ | _IOC_WRITE) << 30) | (size << 16) | (ord(kind) << 8) | number


class SnpReportReq(ctypes.Structure):
    _fields_ = (
        ("user_data", ctypes.c_uint8 * 64),
        ("vmpl", ctypes.c_uint32),
        ("rsvd", ctypes.c_uint8 * 28),
    )


class SnpExtReportReq(ctypes.Structure):
    _fields_ = (
        ("data", SnpReportReq),
        ("certs_address", ctypes.c_uint64),
        ("certs_len", ctypes.c_uint32),
    )


class SnpReportResp(ctypes.Structure):
    _fields_ = (("data", ctypes.c_uint8 * 4000),)


class SnpGuestRequestIoctl(ctypes.Structure):
    _fields_ = (
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("fw_error", ctypes.c_uint32),  # low half of exitinfo2
        ("vmm_error", ctypes.c_uint32),  # high half of exitinfo2
    )


class TdxReportReq(ctypes.Structure):
    _fields_ = (
        ("reportdata", ctypes.c_uint8 * 64),
        ("tdreport", ctypes.c_uint8 * 1024),
    )


SNP_GET_REPORT = _iowr("S", 0x0, ctypes.sizeof(SnpGuestRequestIoctl))
SNP_GET_EXT_REPORT = _iowr("S", 0x2, ctypes.sizeof(SnpGuestRequestIoctl))
TDX_CMD_GET_REPORT0 = _iowr("T", 0x1, ctypes.sizeof(TdxReportReq))

SNP_GUEST_VMM_ERR_INVALID_LEN = 1
SNP_GUEST_VMM_ERR_BUSY = 2
PAGE_SIZE = 4096
#: MSG_REPORT_RSP (SEV-SNP ABI, Table 25): status u32, report_size u32, 24 reserved, report.
MSG_REPORT_RSP_REPORT_OFFSET = 0x20
SNP_REPORT_SIZE = 1184
#: The kernel caps the certificate blob at SEV_FW_BLOB_MAX_SIZE (16 KiB).
SNP_CERTS_MAX = 4 * PAGE_SIZE

Ioctl = Callable[[int, int, Any], Any]


class DeviceError(PlatformError):
    """A guest device refused a request."""


@dataclass(frozen=True)
class SnpDeviceReport:
    report: bytes
    certs: bytes  # the GHCB certificate table, b"" when the host provides none


class _GuestDevice:
    """A guest attestation device node; tests inject the path, the ioctl and the opener."""

    DEFAULT_PATH: ClassVar[Path]

    def __init__(
        self,
        path: Path | None = None,
        ioctl: Ioctl = fcntl.ioctl,
        opener: Callable[[Path], int] | None = None,
    ) -> None:
        self.path = self.DEFAULT_PATH if path is None else path
        self._ioctl = ioctl
        self._open = opener or (lambda p: os.open(p, os.O_RDWR))

    def present(self) -> bool:
        return self.path.exists()


class SevGuestDevice(_GuestDevice):
    """``/dev/sev-guest``: SNP_GET_EXT_REPORT, falling back to SNP_GET_REPORT."""

    DEFAULT_PATH = SEV_GUEST_DEVICE

    def report(self, report_data: bytes, vmpl: int = 0, extended: bool = True) -> SnpDeviceReport:
        fd = self._open_device()
        try:
            if extended:
                return self._ext_report(fd, report_data, vmpl)
            return SnpDeviceReport(self._plain_report(fd, report_data, vmpl), b"")
        finally:
            os.close(fd)

    def _open_device(self) -> int:
        try:
            return self._open(self.path)
        except FileNotFoundError:
            raise PlatformUnavailable(f"{self.path} does not exist: not an SEV-SNP guest") from None
        except PermissionError:
            raise DeviceError(f"cannot open {self.path}: permission denied (run as root)") from None
        except OSError as exc:
            raise DeviceError(f"cannot open {self.path}: {exc.strerror or exc}") from None

    @staticmethod
    def _request(req: ctypes.Structure, resp: SnpReportResp) -> SnpGuestRequestIoctl:
        """The ioctl argument: pointers to ``req`` and ``resp``, which must outlive the call."""
        return SnpGuestRequestIoctl(
            msg_version=1,  # the kernel refuses 0
            req_data=ctypes.addressof(req),
            resp_data=ctypes.addressof(resp),
        )

    def _plain_report(self, fd: int, report_data: bytes, vmpl: int) -> bytes:
        req = SnpReportReq(vmpl=vmpl)
        ctypes.memmove(req.user_data, report_data, 64)
        resp = SnpReportResp()
        arg = self._request(req, resp)
        self._call(fd, SNP_GET_REPORT, arg, "SNP_GET_REPORT")
        return _report_from_resp(resp, self.path)

    def _ext_report(self, fd: int, report_data: bytes, vmpl: int) -> SnpDeviceReport:
        size = PAGE_SIZE
        for _ in range(3):
            certs = ctypes.create_string_buffer(size)
            req = SnpExtReportReq(certs_address=ctypes.addressof(certs), certs_len=size)
            req.data.vmpl = vmpl
            ctypes.memmove(req.data.user_data, report_data, 64)
            resp = SnpReportResp()
            arg = self._request(req, resp)
            try:
                self._ioctl(fd, SNP_GET_EXT_REPORT, arg)
            except OSError as exc:
                if arg.vmm_error == SNP_GUEST_VMM_ERR_INVALID_LEN and req.certs_len > size:
                    size = -(-req.certs_len // PAGE_SIZE) * PAGE_SIZE
                    if size > SNP_CERTS_MAX:
                        break
                    continue
                raise self._failure("SNP_GET_EXT_REPORT", exc, arg) from None
            return SnpDeviceReport(_report_from_resp(resp, self.path), certs.raw[: req.certs_len])
        raise DeviceError(
            f"{self.path}: SNP_GET_EXT_REPORT wants a certificate buffer of "
            f"{req.certs_len} bytes, more than the kernel allows"
        )

    def _call(self, fd: int, request: int, arg: SnpGuestRequestIoctl, name: str) -> None:
        try:
            self._ioctl(fd, request, arg)
        except OSError as exc:
            raise self._failure(name, exc, arg) from None

    def _failure(self, name: str, exc: OSError, arg: SnpGuestRequestIoctl) -> DeviceError:
        if arg.vmm_error == SNP_GUEST_VMM_ERR_BUSY or exc.errno == errno.EAGAIN:
            return DeviceError(
                f"{self.path}: {name}: the host is rate-limiting requests, retry later"
            )
        return DeviceError(
            f"{self.path}: {name} failed: {exc.strerror or exc} "
            f"(firmware error {arg.fw_error:#x}, VMM error {arg.vmm_error:#x})"
        )


def _report_from_resp(resp: SnpReportResp, path: Path) -> bytes:
    raw = bytes(resp.data)
    status = int.from_bytes(raw[0:4], "little")
    size = int.from_bytes(raw[4:8], "little")
    if status != 0:
        raise DeviceError(f"{path}: firmware refused the report request (status {status:#x})")
    if size != SNP_REPORT_SIZE:
        raise DeviceError(f"{path}: firmware returned a {size}-byte report, expected 1184")
    start = MSG_REPORT_RSP_REPORT_OFFSET
    return raw[start : start + SNP_REPORT_SIZE]


class TdxGuestDevice(_GuestDevice):
    """``/dev/tdx_guest``: TDX_CMD_GET_REPORT0 gives a TDREPORT (local, MAC'd, not a quote)."""

    DEFAULT_PATH = TDX_GUEST_DEVICE

    def tdreport(self, report_data: bytes) -> bytes:
        try:
            fd = self._open(self.path)
        except FileNotFoundError:
            raise PlatformUnavailable(f"{self.path} does not exist: not a TDX guest") from None
        except OSError as exc:
            raise DeviceError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        try:
            req = TdxReportReq()
            ctypes.memmove(req.reportdata, report_data, 64)
            try:
                self._ioctl(fd, TDX_CMD_GET_REPORT0, req)
            except OSError as exc:
                raise DeviceError(
                    f"{self.path}: TDX_CMD_GET_REPORT0 failed: {exc.strerror or exc}"
                ) from None
            return bytes(req.tdreport)
        finally:
            os.close(fd)
