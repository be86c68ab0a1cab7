"""tdx (configfs-tsm) and sgx (Gramine /dev/attestation) against fake kernels that
answer with real quotes from the shared vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_kernel import FakeConfigfs

from donjon.attestation import oids
from donjon.keep.platforms.base import PlatformUnavailable
from donjon.keep.platforms.configfs import ConfigfsTsm, TsmProviderMismatch
from donjon.keep.platforms.devguest import TdxGuestDevice
from donjon.keep.platforms.sgx import SgxPlatform, SgxPlatformError
from donjon.keep.platforms.tdx import TdxPlatform, TdxPlatformError


def vector(expected: dict[str, Any], vid: str) -> tuple[bytes, bytes]:
    """(quote, its report_data from expected.json) for one vector id."""
    entry = next(v for v in expected["vectors"] if v["id"] == vid)
    return (
        Path(expected["_dir"], entry["evidence"]).read_bytes(),
        bytes.fromhex(entry["computed"]["parsed"]["body"]["report_data"]),
    )


@pytest.fixture
def quotes(expected: dict[str, Any], vectors: Path) -> dict[str, tuple[bytes, bytes]]:
    data = dict(expected, _dir=str(vectors))
    return {
        "tdx4": vector(data, "tdx-v4-trustee-4"),
        "tdx5": vector(data, "tdx-v5-trustee-5"),
        "sgx3": vector(data, "sgx-v3-trustee-occlum"),
    }


def tdx_platform(fake: FakeConfigfs, tmp_path: Path) -> TdxPlatform:
    device = TdxGuestDevice(path=tmp_path / "tdx_guest")
    device.path.touch()
    return TdxPlatform(tsm=ConfigfsTsm(fake.root, fs=fake), device=device, linux=True)


@pytest.mark.parametrize("which", ["tdx4", "tdx5"])
def test_tdx_quote_through_configfs(
    quotes: dict[str, tuple[bytes, bytes]], tmp_path: Path, which: str
) -> None:
    quote, report_data = quotes[which]
    fake = FakeConfigfs(tmp_path, "tdx_guest", lambda _: (quote, b""))
    platform = tdx_platform(fake, tmp_path)
    assert platform.available()
    ext = platform.evidence_extension(report_data)
    assert ext.oid == oids.EVIDENCE_TDX
    # SEQUENCE { OCTET STRING quote }, long-form lengths: 30 82 LL LL 04 82 LL LL <quote>
    n = len(quote)
    assert (
        ext.value
        == b"\x30\x82" + (n + 4).to_bytes(2, "big") + b"\x04\x82" + n.to_bytes(2, "big") + quote
    )
    assert fake.requests == [report_data]


def test_tdx_quote_with_other_report_data(
    quotes: dict[str, tuple[bytes, bytes]], tmp_path: Path
) -> None:
    quote, _ = quotes["tdx4"]
    fake = FakeConfigfs(tmp_path, "tdx_guest", lambda _: (quote, b""))
    with pytest.raises(TdxPlatformError, match="other report_data than requested"):
        tdx_platform(fake, tmp_path).evidence_extension(bytes(64))


@pytest.mark.parametrize(
    ("blob", "message"),
    [(b"\x04\x00", "too short"), ("sgx3", r"TEE type 0x0 is not TDX"), ("cut", "too short")],
)
def test_tdx_bad_outblob(
    quotes: dict[str, tuple[bytes, bytes]], tmp_path: Path, blob: Any, message: str
) -> None:
    data = {"sgx3": quotes["sgx3"][0], "cut": quotes["tdx4"][0][:600]}.get(blob, blob)
    fake = FakeConfigfs(tmp_path, "tdx_guest", lambda _: (data, b""))
    with pytest.raises(TdxPlatformError, match=message):
        tdx_platform(fake, tmp_path).evidence_extension(bytes(64))


def test_tdx_refuses_snp_provider(quotes: dict[str, tuple[bytes, bytes]], tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, "sev_guest", lambda _: (b"", b""))
    with pytest.raises(TsmProviderMismatch, match="expected tdx_guest"):
        tdx_platform(fake, tmp_path).evidence_extension(bytes(64))


def test_tdx_ioctl_number_and_struct(tmp_path: Path) -> None:
    import os

    seen = []

    def fake_ioctl(fd: int, request: int, arg: Any) -> int:
        seen.append(request)
        arg.tdreport[0:3] = [1, 2, 3]
        assert bytes(arg.reportdata) == bytes(range(64))
        return 0

    device = TdxGuestDevice(
        path=tmp_path / "tdx_guest",
        ioctl=fake_ioctl,
        opener=lambda _: os.open(os.devnull, os.O_RDONLY),
    )
    report = device.tdreport(bytes(range(64)))
    assert seen == [0xC4405401]  # _IOWR('T', 1, 1088 bytes), linux/tdx-guest.h
    assert len(report) == 1024 and report[:3] == b"\x01\x02\x03"


# --- SGX under Gramine --------------------------------------------------------------------


class FakeGramine:
    """/dev/attestation: a quote is produced for whatever user_report_data holds."""

    def __init__(self, root: Path, kind: str, quote_for: Any) -> None:
        self.root = root
        root.mkdir()
        (root / "attestation_type").write_text(kind)
        self.quote_for = quote_for

    def mkdir(self, path: Path) -> None:
        raise AssertionError("not used")

    def rmdir(self, path: Path) -> None:
        raise AssertionError("not used")

    def is_dir(self, path: Path) -> bool:
        return path.is_dir()

    def write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)

    def read(self, path: Path) -> bytes:
        if path.name == "quote":
            return bytes(self.quote_for((self.root / "user_report_data").read_bytes()))
        return path.read_bytes()


def test_sgx_quote_under_gramine(quotes: dict[str, tuple[bytes, bytes]], tmp_path: Path) -> None:
    quote, report_data = quotes["sgx3"]
    fake = FakeGramine(tmp_path / "attestation", "dcap", lambda _: quote)
    platform = SgxPlatform(root=fake.root, fs=fake, linux=True)
    assert platform.available()
    ext = platform.evidence_extension(report_data)
    assert ext.oid == oids.ENARX_SGX
    # SEQUENCE { OCTET STRING quote, CrlList { SEQUENCE {} }, TcbPackage { SEQUENCE {}, "" } }
    n = len(quote)
    tail = bytes.fromhex("30023000300430000400")
    inner = b"\x04\x82" + n.to_bytes(2, "big") + quote + tail
    assert ext.value == b"\x30\x82" + len(inner).to_bytes(2, "big") + inner


def test_sgx_not_dcap(tmp_path: Path) -> None:
    fake = FakeGramine(tmp_path / "attestation", "none", lambda _: b"")
    platform = SgxPlatform(root=fake.root, fs=fake, linux=True)
    assert not platform.available()
    with pytest.raises(PlatformUnavailable, match="attestation type is 'none'"):
        platform.evidence_extension(bytes(64))


def test_sgx_tdx_quote_refused(quotes: dict[str, tuple[bytes, bytes]], tmp_path: Path) -> None:
    fake = FakeGramine(tmp_path / "attestation", "dcap", lambda _: quotes["tdx4"][0])
    with pytest.raises(SgxPlatformError, match="not an SGX DCAP quote v3"):
        SgxPlatform(root=fake.root, fs=fake, linux=True).evidence_extension(bytes(64))


def test_sgx_not_in_enclave(tmp_path: Path) -> None:
    platform = SgxPlatform(root=tmp_path / "none", linux=True)
    assert not platform.available()
    with pytest.raises(PlatformUnavailable, match="not in an SGX enclave under Gramine"):
        platform.evidence_extension(bytes(64))
