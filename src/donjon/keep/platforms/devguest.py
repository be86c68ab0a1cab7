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
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from donjon.keep.platforms.base import PlatformError, PlatformUnavailable

SEV_GUEST_DEVICE = Path("/dev/sev-guest")
TDX_GUEST_DEVICE = Path("/dev/tdx_guest")

_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, kind: str, number: int, size: int) -> int:
    """Linux ``_IOC``: direction bits 30-31, size 16-29, type 8-15, number 0-7."""
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | number


def _iowr(kind: str, number: int, size: int) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, kind, number, size)


def _ior(kind: str, number: int, size: int) -> int:
    return _ioc(_IOC_READ, kind, number, size)


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


class TdxQuoteReq(ctypes.Structure):
    """``struct tdx_quote_req``: the address and length of the GetQuote shared buffer."""

    _fields_ = (("buf", ctypes.c_uint64), ("len", ctypes.c_uint64))


SNP_GET_REPORT = _iowr("S", 0x0, ctypes.sizeof(SnpGuestRequestIoctl))
SNP_GET_EXT_REPORT = _iowr("S", 0x2, ctypes.sizeof(SnpGuestRequestIoctl))
TDX_CMD_GET_REPORT0 = _iowr("T", 0x1, ctypes.sizeof(TdxReportReq))

#: GetQuote. Its number differs between the kernel trees that had it: ``_IOR('T', 4)`` in
#: Intel's DCAP library (``tdx_attest.c``), ``_IOWR('T', 4)`` for its "V3" driver, and
#: ``_IOWR('T', 2)`` in Google's go-tdx-guest (``client/linuxabi``). Upstream has none
#: (ENOTTY); tried in this order, and the first that is not ENOTTY/EINVAL is kept.
TDX_CMD_GET_QUOTE = _ior("T", 0x4, ctypes.sizeof(TdxQuoteReq))
TDX_GET_QUOTE_COMMANDS = (
    TDX_CMD_GET_QUOTE,
    _iowr("T", 0x4, ctypes.sizeof(TdxQuoteReq)),
    _iowr("T", 0x2, ctypes.sizeof(TdxQuoteReq)),
)
#: ``struct tdx_quote_hdr`` (GHCI "TDG.VP.VMCALL<GetQuote>"): version u64, status u64,
#: in_len u32, out_len u32, then data.
TDX_QUOTE_HDR = struct.Struct("<QQII")
GET_QUOTE_VERSION = 1
GET_QUOTE_SUCCESS = 0
GET_QUOTE_IN_FLIGHT = 0xFFFF_FFFF_FFFF_FFFF
GET_QUOTE_ERROR = 0x8000_0000_0000_0000
GET_QUOTE_SERVICE_UNAVAILABLE = 0x8000_0000_0000_0001
#: Four pages, as Intel's library uses; a TDX quote with its PCK chain is 5-8 KiB.
GET_QUOTE_BUF_SIZE = 4 * 4096
#: Linux's own configfs-tsm GetQuote timeout (``getquote_timeout``) is 30 s.
GET_QUOTE_TIMEOUT = 30.0
GET_QUOTE_FIRST_DELAY = 0.05
GET_QUOTE_MAX_DELAY = 1.0
#: The Quote Generation Service message (Intel DCAP ``qgs_msg_lib``): header major u16,
#: minor u16, type u32, size u32 (whole message), error_code u32; then for GET_QUOTE_REQ
#: report_size u32, id_list_size u32, report; for GET_QUOTE_RESP selected_id_size u32,
#: quote_size u32, id, quote. Integers little-endian; the 4-byte framing length big-endian.
QGS_MSG_HEADER = struct.Struct("<HHIII")
QGS_QUOTE_SIZES = struct.Struct("<II")
QGS_MAJOR_VERSION = 1
QGS_GET_QUOTE_REQ = 0
QGS_GET_QUOTE_RESP = 1

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
    #: What a missing device node means, for the error message.
    GUEST_KIND: ClassVar[str]

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

    def _open_device(self) -> int:
        try:
            return self._open(self.path)
        except FileNotFoundError:
            raise PlatformUnavailable(
                f"{self.path} does not exist: not {self.GUEST_KIND}"
            ) from None
        except PermissionError:
            raise DeviceError(f"cannot open {self.path}: permission denied (run as root)") from None
        except OSError as exc:
            raise DeviceError(f"cannot open {self.path}: {exc.strerror or exc}") from None


class SevGuestDevice(_GuestDevice):
    """``/dev/sev-guest``: SNP_GET_EXT_REPORT, falling back to SNP_GET_REPORT."""

    DEFAULT_PATH = SEV_GUEST_DEVICE
    GUEST_KIND = "an SEV-SNP guest"

    def report(self, report_data: bytes, vmpl: int = 0, extended: bool = True) -> SnpDeviceReport:
        fd = self._open_device()
        try:
            if extended:
                return self._ext_report(fd, report_data, vmpl)
            return SnpDeviceReport(self._plain_report(fd, report_data, vmpl), b"")
        finally:
            os.close(fd)

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


class TdxQuoteUnsupported(PlatformUnavailable):
    """``/dev/tdx_guest`` without a GetQuote ioctl: an upstream kernel, where only configfs-tsm
    turns a TDREPORT into a quote."""


class TdxGuestDevice(_GuestDevice):
    """``/dev/tdx_guest``: GET_REPORT0 gives the local TDREPORT; GET_QUOTE turns it into a quote.

    GET_QUOTE only exists on the TDX kernels that predate configfs-tsm (Intel's and
    distributions' TDX trees); upstream answers ENOTTY. The host's quoting service
    answers asynchronously, so busy and in-flight answers are retried until a deadline.
    """

    DEFAULT_PATH = TDX_GUEST_DEVICE
    GUEST_KIND = "a TDX guest"

    def __init__(
        self,
        path: Path | None = None,
        ioctl: Ioctl = fcntl.ioctl,
        opener: Callable[[Path], int] | None = None,
        *,
        timeout: float = GET_QUOTE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(path, ioctl, opener)
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep

    def tdreport(self, report_data: bytes) -> bytes:
        fd = self._open_device()
        try:
            return self._report0(fd, report_data)
        finally:
            os.close(fd)

    def quote(self, report_data: bytes) -> bytes:
        """A DCAP quote over ``report_data``: GET_REPORT0, then GET_QUOTE until done."""
        fd = self._open_device()
        try:
            request = qgs_quote_request(self._report0(fd, report_data))
            return self._get_quote(fd, request)
        finally:
            os.close(fd)

    def _report0(self, fd: int, report_data: bytes) -> bytes:
        req = TdxReportReq()
        ctypes.memmove(req.reportdata, report_data, 64)
        try:
            self._ioctl(fd, TDX_CMD_GET_REPORT0, req)
        except OSError as exc:
            raise DeviceError(
                f"{self.path}: TDX_CMD_GET_REPORT0 failed: {exc.strerror or exc}"
            ) from None
        return bytes(req.tdreport)

    def _get_quote(self, fd: int, request: bytes) -> bytes:
        deadline = self._clock() + self.timeout
        delay = GET_QUOTE_FIRST_DELAY
        commands = list(TDX_GET_QUOTE_COMMANDS)
        known = False  # whether commands[0] has been accepted by this kernel
        while True:
            buf = ctypes.create_string_buffer(GET_QUOTE_BUF_SIZE)
            TDX_QUOTE_HDR.pack_into(buf, 0, GET_QUOTE_VERSION, 0, len(request), 0)
            ctypes.memmove(ctypes.addressof(buf) + TDX_QUOTE_HDR.size, request, len(request))
            arg = TdxQuoteReq(buf=ctypes.addressof(buf), len=GET_QUOTE_BUF_SIZE)
            try:
                self._ioctl(fd, commands[0], arg)
            except OSError as exc:
                if not known and exc.errno in (errno.ENOTTY, errno.EINVAL):
                    commands.pop(0)  # another kernel tree numbered GET_QUOTE differently
                    if commands:
                        continue
                    raise TdxQuoteUnsupported(
                        f"{self.path}: this kernel has no TDX GetQuote ioctl, so it gives only a "
                        "local TDREPORT; use a kernel with configfs-tsm (Linux 6.7+)"
                    ) from None
                if exc.errno not in (errno.EBUSY, errno.EAGAIN, errno.EINTR):
                    raise DeviceError(
                        f"{self.path}: TDX_CMD_GET_QUOTE failed: {exc.strerror or exc}"
                    ) from None
                known = True  # the kernel knows the command: it is only busy
                status = GET_QUOTE_IN_FLIGHT  # retried as for in-flight
            else:
                known = True
                _version, status, _in_len, out_len = TDX_QUOTE_HDR.unpack_from(buf, 0)
                if status == GET_QUOTE_SUCCESS:
                    return self._quote_from(buf.raw, out_len)
            if status != GET_QUOTE_IN_FLIGHT:
                raise DeviceError(f"{self.path}: GetQuote: {_status_text(status)}")
            now = self._clock()
            if now >= deadline:
                raise DeviceError(
                    f"{self.path}: GetQuote: the host's quoting service did not answer within "
                    f"{self.timeout:g} s (still busy or in flight)"
                )
            self._sleep(min(delay, deadline - now))
            delay = min(delay * 2, GET_QUOTE_MAX_DELAY)

    def _quote_from(self, raw: bytes, out_len: int) -> bytes:
        room = len(raw) - TDX_QUOTE_HDR.size
        if out_len > room:
            raise DeviceError(
                f"{self.path}: GetQuote: out_len {out_len} exceeds the {room}-byte data buffer"
            )
        data = raw[TDX_QUOTE_HDR.size : TDX_QUOTE_HDR.size + out_len]
        return qgs_quote_response(data, f"{self.path}: GetQuote")


def _status_text(status: int) -> str:
    if status == GET_QUOTE_ERROR:
        return "the host's quoting service failed to produce a quote (GET_QUOTE_ERROR)"
    if status == GET_QUOTE_SERVICE_UNAVAILABLE:
        return (
            "the host runs no quoting service (GET_QUOTE_SERVICE_UNAVAILABLE): "
            "ask the host to start the TDX Quote Generation Service (qgsd)"
        )
    return f"unknown status {status:#x} from the host"


def qgs_quote_request(tdreport: bytes) -> bytes:
    """GET_QUOTE's input: a 4-byte big-endian length, then a QGS GET_QUOTE_REQ over the TDREPORT."""
    size = QGS_MSG_HEADER.size + QGS_QUOTE_SIZES.size + len(tdreport)
    message = (
        QGS_MSG_HEADER.pack(QGS_MAJOR_VERSION, 0, QGS_GET_QUOTE_REQ, size, 0)
        + QGS_QUOTE_SIZES.pack(len(tdreport), 0)  # report_size, id_list_size
        + tdreport
    )
    return struct.pack(">I", size) + message


def qgs_quote_response(data: bytes, where: str) -> bytes:
    """The quote inside GET_QUOTE's output (length prefix + QGS GET_QUOTE_RESP), checked."""
    if len(data) < 4:
        raise DeviceError(f"{where}: the host returned {len(data)} bytes, no quote")
    (size,) = struct.unpack_from(">I", data, 0)
    message = data[4:]
    if size != len(message):
        raise DeviceError(
            f"{where}: the response says {size} bytes but out_len leaves {len(message)}"
        )
    fixed = QGS_MSG_HEADER.size + QGS_QUOTE_SIZES.size
    if size < fixed:
        raise DeviceError(f"{where}: a {size}-byte response is too short for GET_QUOTE_RESP")
    major, _minor, kind, msg_size, error_code = QGS_MSG_HEADER.unpack_from(message, 0)
    if major != QGS_MAJOR_VERSION or kind != QGS_GET_QUOTE_RESP:
        raise DeviceError(
            f"{where}: not a QGS GET_QUOTE_RESP (version {major}, message type {kind})"
        )
    if error_code != 0:
        raise DeviceError(f"{where}: the quoting service answered error code {error_code:#x}")
    id_size, quote_size = QGS_QUOTE_SIZES.unpack_from(message, QGS_MSG_HEADER.size)
    if msg_size != size or fixed + id_size + quote_size > size or quote_size == 0:
        raise DeviceError(
            f"{where}: inconsistent GET_QUOTE_RESP sizes (message {msg_size} of {size} "
            f"bytes, id {id_size}, quote {quote_size})"
        )
    return message[fixed + id_size : fixed + id_size + quote_size]
