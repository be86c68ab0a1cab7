"""The tdx platform through /dev/tdx_guest (GET_REPORT0 + GET_QUOTE), against a fake kernel
that reads the request structs from memory, as the real driver does.

Layouts are checked against hand-written facts, not the code's own constants: the ioctl
numbers from Linux's ``_IOC`` encoding, ``struct tdx_quote_hdr`` (GHCI) and the QGS message
of Intel DCAP's ``qgs_msg_lib`` that Intel's ``libtdx_attest`` puts in the buffer.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from donjon.attestation import oids
from donjon.keep.platforms import devguest
from donjon.keep.platforms.base import PlatformUnavailable
from donjon.keep.platforms.configfs import ConfigfsTsm
from donjon.keep.platforms.devguest import DeviceError, TdxGuestDevice, TdxQuoteUnsupported
from donjon.keep.platforms.tdx import TdxPlatform, TdxPlatformError

GET_REPORT0 = 0xC4405401  # _IOWR('T', 1, 1088): 3<<30 | 0x440<<16 | 0x54<<8 | 1
GET_QUOTE_IOR_4 = 0x80105404  # _IOR('T', 4, 16): 2<<30 | 0x10<<16 | 0x54<<8 | 4
GET_QUOTE_IOWR_4 = 0xC0105404  # _IOWR('T', 4, 16)
GET_QUOTE_IOWR_2 = 0xC0105402  # _IOWR('T', 2, 16), go-tdx-guest's number
IN_FLIGHT = 0xFFFF_FFFF_FFFF_FFFF
ERROR = 0x8000_0000_0000_0000
UNAVAILABLE = 0x8000_0000_0000_0001
BUFFER = 16384  # four pages
REPORT_DATA = bytes(range(64, 128))


def synthetic_quote(report_data: bytes) -> bytes:
    """A v4 TDX quote skeleton: 48-byte header (version 4, key type 2, TEE 0x81), 584-byte
    body with REPORTDATA at 520, then a signature length and some signature bytes."""
    header = struct.pack("<HHI", 4, 2, 0x81).ljust(48, b"\x00")
    body = bytearray(b"\xab" * 584)
    body[520:584] = report_data
    return header + bytes(body) + (16).to_bytes(4, "little") + b"\xcd" * 16


def qgs_response(quote: bytes, *, error_code: int = 0, kind: int = 1) -> bytes:
    """4-byte big-endian length + GET_QUOTE_RESP {header(16), selected_id_size, quote_size}."""
    size = 16 + 8 + len(quote)
    message = struct.pack("<HHIII", 1, 0, kind, size, error_code)
    return size.to_bytes(4, "big") + message + struct.pack("<II", 0, len(quote)) + quote


class Clock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeTdxGuest:
    """Plays the TDX guest driver: GET_REPORT0 returns a TDREPORT with the caller's report
    data at offset 128 of REPORTMACSTRUCT; GET_QUOTE answers from a script of steps."""

    def __init__(self, steps: list[Any], quote_for: Callable[[bytes], bytes]) -> None:
        self.steps = steps
        self.quote_for = quote_for
        self.calls: list[int] = []
        self.tdreport = b""
        self.report_data = b""

    def __call__(self, fd: int, request: int, arg: Any) -> int:
        self.calls.append(request)
        if request == GET_REPORT0:
            self.report_data = bytes(arg.reportdata)
            report = bytearray(b"\x5a" * 1024)
            report[0:4] = b"\x81\x00\x00\x00"  # REPORTTYPE: TDX
            report[128:192] = self.report_data
            self.tdreport = bytes(report)
            ctypes.memmove(arg.tdreport, self.tdreport, 1024)
            return 0
        step = self.steps.pop(0)
        if isinstance(step, OSError):
            raise step
        buf, length = arg.buf, arg.len
        assert length == BUFFER
        version, status, in_len, out_len = struct.unpack("<QQII", ctypes.string_at(buf, 24))
        assert (version, status, out_len) == (1, 0, 0)
        self.check_request(ctypes.string_at(buf + 24, in_len))
        if step == "success":
            answer = qgs_response(self.quote_for(self.report_data))
            ctypes.memmove(buf + 24, answer, len(answer))
            ctypes.memmove(buf, struct.pack("<QQII", 1, 0, in_len, len(answer)), 24)
        elif isinstance(step, tuple):  # (status, out_len, data)
            status, out_len, data = step
            ctypes.memmove(buf + 24, data, len(data))
            ctypes.memmove(buf, struct.pack("<QQII", 1, status, in_len, out_len), 24)
        return 0

    def check_request(self, data: bytes) -> None:
        assert len(data) == 4 + 1048  # framing + header 16 + sizes 8 + TDREPORT 1024
        assert data[:4] == (1048).to_bytes(4, "big")
        assert struct.unpack("<HHIIIII", data[4:28]) == (1, 0, 0, 1048, 0, 1024, 0)
        assert data[28:] == self.tdreport


def device(tmp_path: Path, fake: Any, clock: Clock | None = None, **kw: Any) -> TdxGuestDevice:
    clock = clock or Clock()
    dev = TdxGuestDevice(
        path=tmp_path / "tdx_guest",
        ioctl=fake,
        opener=lambda _: os.open(os.devnull, os.O_RDONLY),
        clock=clock,
        sleep=clock.sleep,
        **kw,
    )
    dev.path.touch()
    return dev


def platform(tmp_path: Path, dev: TdxGuestDevice) -> TdxPlatform:
    return TdxPlatform(tsm=ConfigfsTsm(tmp_path / "no-configfs"), device=dev, linux=True)


def test_numbers_and_layouts_by_hand() -> None:
    assert devguest.TDX_CMD_GET_QUOTE == GET_QUOTE_IOR_4
    assert devguest.TDX_GET_QUOTE_COMMANDS == (GET_QUOTE_IOR_4, GET_QUOTE_IOWR_4, GET_QUOTE_IOWR_2)
    assert ctypes.sizeof(devguest.TdxQuoteReq) == 16
    assert devguest.qgs_quote_request(b"\x01" * 1024)[:8] == bytes.fromhex("0000041801000000")


@pytest.fixture
def real_quote(expected: dict[str, Any], vectors: Path) -> tuple[bytes, bytes]:
    entry = next(v for v in expected["vectors"] if v["id"] == "tdx-v5-trustee-5")
    return (
        Path(vectors, entry["evidence"]).read_bytes(),
        bytes.fromhex(entry["computed"]["parsed"]["body"]["report_data"]),
    )


def check_evidence(tmp_path: Path, quote: bytes, report_data: bytes) -> FakeTdxGuest:
    fake = FakeTdxGuest(["success"], lambda _: quote)
    p = platform(tmp_path, device(tmp_path, fake))
    assert p.available()
    ext = p.evidence_extension(report_data)
    assert ext.oid == oids.EVIDENCE_TDX
    n = len(quote)  # SEQUENCE { OCTET STRING quote }, two-byte long-form lengths
    assert (
        ext.value
        == b"\x30\x82" + (n + 4).to_bytes(2, "big") + b"\x04\x82" + n.to_bytes(2, "big") + quote
    )
    assert fake.report_data == report_data
    assert fake.calls == [GET_REPORT0, GET_QUOTE_IOR_4]
    return fake


def test_real_quote_through_dev_tdx_guest(tmp_path: Path, real_quote: tuple[bytes, bytes]) -> None:
    check_evidence(tmp_path, *real_quote)


def test_synthetic_quote_through_dev_tdx_guest(tmp_path: Path) -> None:
    check_evidence(tmp_path, synthetic_quote(REPORT_DATA), REPORT_DATA)


def test_busy_then_in_flight_then_success(tmp_path: Path) -> None:
    clock = Clock()
    busy = OSError(errno.EBUSY, "Device or resource busy")
    fake = FakeTdxGuest([busy, (IN_FLIGHT, 0, b""), "success"], synthetic_quote)
    quote = device(tmp_path, fake, clock).quote(REPORT_DATA)
    assert quote == synthetic_quote(REPORT_DATA)
    assert clock.sleeps == [0.05, 0.1]  # backoff doubles from 50 ms
    assert fake.calls == [GET_REPORT0] + [GET_QUOTE_IOR_4] * 3


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (ERROR, r"failed to produce a quote \(GET_QUOTE_ERROR\)"),
        (UNAVAILABLE, r"no quoting service \(GET_QUOTE_SERVICE_UNAVAILABLE\).*qgsd"),
        (0x1234, "unknown status 0x1234 from the host"),
    ],
)
def test_status_errors(tmp_path: Path, status: int, message: str) -> None:
    fake = FakeTdxGuest([(status, 0, b"")], synthetic_quote)
    with pytest.raises(DeviceError, match=message):
        device(tmp_path, fake).quote(REPORT_DATA)


def test_timeout(tmp_path: Path) -> None:
    clock = Clock()
    fake = FakeTdxGuest([(IN_FLIGHT, 0, b"")] * 100, synthetic_quote)
    with pytest.raises(DeviceError, match=r"did not answer within 2 s \(still busy or in flight\)"):
        device(tmp_path, fake, clock, timeout=2.0).quote(REPORT_DATA)
    # 50 ms doubling, the last sleep cut to the deadline: 0.05+0.1+0.2+0.4+0.8 = 1.55, then 0.45
    assert clock.sleeps == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 0.45])
    assert clock.now == pytest.approx(2.0)
    assert len(fake.calls) == 1 + 7  # GET_REPORT0, then one GET_QUOTE per wake-up


def test_get_quote_unsupported(tmp_path: Path) -> None:
    enotty = OSError(errno.ENOTTY, "Inappropriate ioctl for device")
    fake = FakeTdxGuest([enotty, enotty, OSError(errno.EINVAL, "Invalid argument")], bytes)
    p = platform(tmp_path, device(tmp_path, fake))
    assert p.available()  # only asking tells
    with pytest.raises(
        TdxQuoteUnsupported, match=r"only a.*TDREPORT.*configfs-tsm \(Linux 6\.7\+\)"
    ):
        p.evidence_extension(REPORT_DATA)
    assert fake.calls == [GET_REPORT0, GET_QUOTE_IOR_4, GET_QUOTE_IOWR_4, GET_QUOTE_IOWR_2]


def test_other_kernel_tree_number(tmp_path: Path) -> None:
    enotty = OSError(errno.ENOTTY, "Inappropriate ioctl for device")
    fake = FakeTdxGuest([enotty, enotty, "success"], synthetic_quote)
    assert device(tmp_path, fake).quote(REPORT_DATA) == synthetic_quote(REPORT_DATA)
    assert fake.calls[-1] == GET_QUOTE_IOWR_2


def test_einval_after_the_command_answered_is_not_unsupported(tmp_path: Path) -> None:
    fake = FakeTdxGuest(
        [OSError(errno.EBUSY, "busy"), OSError(errno.EINVAL, "Invalid argument")], bytes
    )
    with pytest.raises(DeviceError, match="TDX_CMD_GET_QUOTE failed: Invalid argument") as info:
        device(tmp_path, fake).quote(REPORT_DATA)
    assert not isinstance(info.value, TdxQuoteUnsupported)


def test_out_len_larger_than_the_buffer(tmp_path: Path) -> None:
    fake = FakeTdxGuest([(0, 20000, b"")], bytes)
    with pytest.raises(DeviceError, match="out_len 20000 exceeds the 16360-byte data buffer"):
        device(tmp_path, fake).quote(REPORT_DATA)


QUOTE = synthetic_quote(REPORT_DATA)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "returned 0 bytes, no quote"),
        (qgs_response(QUOTE)[:-1], r"says 676 bytes but out_len leaves 675"),
        (qgs_response(QUOTE, error_code=0x12), "quoting service answered error code 0x12"),
        (qgs_response(QUOTE, kind=0), r"not a QGS GET_QUOTE_RESP \(version 1, message type 0\)"),
        (qgs_response(b""), "inconsistent GET_QUOTE_RESP sizes"),
        ((8).to_bytes(4, "big") + bytes(8), "8-byte response is too short"),
    ],
    ids=["empty", "truncated", "error-code", "wrong-type", "no-quote", "short"],
)
def test_bad_responses(tmp_path: Path, data: bytes, message: str) -> None:
    fake = FakeTdxGuest([(0, len(data), data)], bytes)
    with pytest.raises(DeviceError, match=message):
        device(tmp_path, fake).quote(REPORT_DATA)


def test_quote_over_other_report_data(tmp_path: Path) -> None:
    fake = FakeTdxGuest(["success"], lambda _: synthetic_quote(bytes(64)))
    with pytest.raises(TdxPlatformError, match="GetQuote: the quote carries other report_data"):
        platform(tmp_path, device(tmp_path, fake)).evidence_extension(REPORT_DATA)


def test_configfs_comes_first(tmp_path: Path) -> None:
    from fake_kernel import FakeConfigfs

    fake_tsm = FakeConfigfs(tmp_path, "tdx_guest", lambda inblob: (synthetic_quote(inblob), b""))
    fake_dev = FakeTdxGuest([], bytes)
    p = TdxPlatform(
        tsm=ConfigfsTsm(fake_tsm.root, fs=fake_tsm), device=device(tmp_path, fake_dev), linux=True
    )
    assert p.quote(REPORT_DATA) == synthetic_quote(REPORT_DATA)
    assert fake_dev.calls == [] and fake_tsm.requests == [REPORT_DATA]


def test_permission_denied(tmp_path: Path) -> None:
    def denied(path: Path) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    dev = TdxGuestDevice(path=tmp_path / "tdx_guest", opener=denied)
    with pytest.raises(DeviceError, match="permission denied"):
        dev.quote(REPORT_DATA)


def test_no_device(tmp_path: Path) -> None:
    dev = TdxGuestDevice(path=tmp_path / "tdx_guest")
    p = platform(tmp_path, dev)
    assert not p.available()
    with pytest.raises(PlatformUnavailable, match="not a TDX guest"):
        p.evidence_extension(REPORT_DATA)
