"""The snp platform inside a fake SEV-SNP guest: configfs-tsm and /dev/sev-guest,
with a provider that signs reports with the simulated VCEK."""

from __future__ import annotations

import ctypes
import errno
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fake_kernel import FakeConfigfs

from donjon.attestation import oids
from donjon.keep.platforms import devguest
from donjon.keep.platforms.base import PlatformError, PlatformUnavailable
from donjon.keep.platforms.configfs import ConfigfsTsm, TsmProviderMismatch
from donjon.keep.platforms.devguest import SevGuestDevice
from donjon.keep.platforms.snp import (
    GUID_ARK,
    GUID_ASK,
    GUID_VCEK,
    SnpPlatform,
    SnpPlatformError,
    build_cert_table,
    parse_cert_table,
)
from donjon.keep.sim import state
from donjon.keep.sim.report import GuestIdentity, make_report

REPORT_DATA = bytes(range(64, 128))
MEASUREMENT = bytes(48)


class SimFirmware:
    """Plays the AMD secure processor with the simulated hierarchy."""

    def __init__(self, directory: Path) -> None:
        self.state = state.load(directory)
        self.guest = GuestIdentity(MEASUREMENT)
        self.with_certs = True

    def report(self, report_data: bytes) -> bytes:
        return make_report(self.state.config, self.state.vcek_key, self.guest, report_data)

    def cert_table(self) -> bytes:
        if not self.with_certs:
            return b""
        der = {
            GUID_VCEK: self.state.vcek.public_bytes(Encoding.DER),
            GUID_ASK: self.state.ask.public_bytes(Encoding.DER),
            GUID_ARK: self.state.ark.public_bytes(Encoding.DER),
        }
        return build_cert_table(der)

    def provider(self, inblob: bytes) -> tuple[bytes, bytes]:
        return self.report(inblob), self.cert_table()


@pytest.fixture
def firmware(sim_state_dir: Path) -> SimFirmware:
    return SimFirmware(sim_state_dir / "sim")


def platform_on_configfs(fake: FakeConfigfs, tmp_path: Path, **kw: Any) -> SnpPlatform:
    device = SevGuestDevice(path=tmp_path / "dev-sev-guest")
    device.path.touch()
    return SnpPlatform(tsm=ConfigfsTsm(fake.root, fs=fake), device=device, linux=True, **kw)


def tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """One DER TLV at ``pos``: (tag, value, end). Written by hand for independence."""
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        length = first
    return tag, data[pos : pos + length], pos + length


def children(value: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, content, whole TLV) of each element inside a constructed value."""
    out, pos = [], 0
    while pos < len(value):
        tag, content, end = tlv(value, pos)
        out.append((tag, content, value[pos:end]))
        pos = end
    return out


def decode_extension(ext: x509.UnrecognizedExtension) -> tuple[x509.Certificate, list[Any], bytes]:
    """SEQUENCE { SEQUENCE { vcek, SEQUENCE { SEQUENCE OF ... } }, OCTET STRING report }."""
    tag, outer, end = tlv(ext.value)
    assert tag == 0x30 and end == len(ext.value)
    (t1, certs, _), (t2, report, _) = children(outer)
    assert (t1, t2) == (0x30, 0x04)
    (_, _, vcek_der), (t3, crl_list, _) = children(certs)
    assert t3 == 0x30
    ((t4, entries, _),) = children(crl_list)
    assert t4 == 0x30
    return x509.load_der_x509_certificate(vcek_der), children(entries), report


def test_configfs_evidence_is_enarx_snp(firmware: SimFirmware, tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, "sev_guest", firmware.provider)
    platform = platform_on_configfs(fake, tmp_path)
    assert platform.available()
    ext = platform.evidence_extension(REPORT_DATA)
    assert ext.oid == oids.ENARX_SNP
    vcek, crls, report = decode_extension(ext)
    assert vcek == firmware.state.vcek  # taken from the auxblob certificate table
    assert crls == []
    assert len(report) == 1184 and report[0x50:0x90] == REPORT_DATA
    assert fake.requests == [REPORT_DATA] and fake.leftover_entries() == []


def test_short_outblob(firmware: SimFirmware, tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, "sev_guest", lambda inblob: (firmware.report(inblob)[:1000], b""))
    with pytest.raises(SnpPlatformError, match="got 1000 bytes, an SEV-SNP report is 1184"):
        platform_on_configfs(fake, tmp_path).evidence_extension(REPORT_DATA)


def test_provider_answering_other_report_data(firmware: SimFirmware, tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, "sev_guest", lambda _: firmware.provider(bytes(64)))
    with pytest.raises(SnpPlatformError, match="other report_data than requested"):
        platform_on_configfs(fake, tmp_path).evidence_extension(REPORT_DATA)


def test_tdx_provider_is_not_snp(firmware: SimFirmware, tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, "tdx_guest", firmware.provider)
    with pytest.raises(TsmProviderMismatch, match="expected sev_guest"):
        platform_on_configfs(fake, tmp_path).evidence_extension(REPORT_DATA)


class FakeFetcher:
    def __init__(self, der: bytes) -> None:
        self.der = der
        self.calls: list[tuple[str, bytes, int]] = []

    def vcek(self, product: Any, hwid: bytes, tcb: Any) -> bytes:
        self.calls.append((product.value, hwid, tcb.raw))
        return self.der

    def cert_chain(self, product: Any, kind: str) -> bytes:
        raise AssertionError("not used")

    def crl(self, product: Any, kind: str) -> bytes:
        raise AssertionError("not used")


def test_vcek_from_kds_then_cache(firmware: SimFirmware, tmp_path: Path, chip_id: bytes) -> None:
    firmware.with_certs = False
    fake = FakeConfigfs(tmp_path, "sev_guest", firmware.provider)
    fetcher = FakeFetcher(firmware.state.vcek.public_bytes(Encoding.DER))
    cache = tmp_path / "cache"
    platform = platform_on_configfs(fake, tmp_path, cache_dir=cache, fetcher=fetcher)
    first = decode_extension(platform.evidence_extension(REPORT_DATA))[0]
    second = decode_extension(platform.evidence_extension(REPORT_DATA))[0]
    assert first == second == firmware.state.vcek
    # One KDS call, for Milan, the chip's 64-byte hwID and TCB bl=3 tee=0 snp=20 ucode=209.
    assert fetcher.calls == [("Milan", chip_id, 0xD114000000000003)]
    assert len(list(cache.iterdir())) == 1


def test_no_vcek_anywhere(firmware: SimFirmware, tmp_path: Path) -> None:
    from donjon.attestation.errors import CollateralMissingError

    class Offline(FakeFetcher):
        def vcek(self, product: Any, hwid: bytes, tcb: Any) -> bytes:
            raise CollateralMissingError("KDS unreachable: connection refused")

    firmware.with_certs = False
    fake = FakeConfigfs(tmp_path, "sev_guest", firmware.provider)
    platform = platform_on_configfs(fake, tmp_path, fetcher=Offline(b""))
    with pytest.raises(SnpPlatformError, match="cannot get the VCEK from AMD KDS: KDS unreachable"):
        platform.evidence_extension(REPORT_DATA)


def test_not_linux_or_no_guest(tmp_path: Path) -> None:
    device = SevGuestDevice(path=tmp_path / "missing")
    off = SnpPlatform(tsm=ConfigfsTsm(tmp_path / "none"), device=device, linux=True)
    assert not off.available()
    with pytest.raises(PlatformUnavailable, match="no SEV-SNP guest interface"):
        off.evidence_extension(REPORT_DATA)
    mac = SnpPlatform(tsm=ConfigfsTsm(tmp_path / "none"), device=device, linux=False)
    with pytest.raises(PlatformUnavailable, match="needs a Linux SEV-SNP guest"):
        mac.evidence_extension(REPORT_DATA)


# --- the certificate table ------------------------------------------------------------------


def test_cert_table_layout_by_hand() -> None:
    table = build_cert_table({GUID_VCEK: b"abc"})
    # One 24-byte entry (GUID, offset 48, length 3), a zero terminator, then the data.
    assert table[:16] == bytes.fromhex("63da758de6644564adc5f4b93be8accd")
    assert table[16:24] == (48).to_bytes(4, "little") + (3).to_bytes(4, "little")
    assert table[24:48] == bytes(24) and table[48:] == b"abc"
    assert parse_cert_table(table) == {GUID_VCEK: b"abc"}


def test_cert_table_mixed_endian_guid() -> None:
    entry = GUID_ASK.bytes_le + (48).to_bytes(4, "little") + (2).to_bytes(4, "little")
    assert parse_cert_table(entry + bytes(24) + b"ok") == {GUID_ASK: b"ok"}


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (
            GUID_VCEK.bytes + (40).to_bytes(4, "little") + (99).to_bytes(4, "little") + bytes(24),
            "points outside",
        ),
        (
            GUID_VCEK.bytes + (48).to_bytes(4, "little") + (1).to_bytes(4, "little"),
            "points outside",
        ),
        (
            # A GUID Donjon does not know (fixed: test ids must not change between runs).
            uuid.UUID(int=0x5EED).bytes + (24).to_bytes(4, "little") + (1).to_bytes(4, "little")
            + b"x",
            "no terminating",
        ),
    ],
)
def test_bad_cert_tables(blob: bytes, message: str) -> None:
    with pytest.raises(SnpPlatformError, match=message):
        parse_cert_table(blob)


# --- /dev/sev-guest -------------------------------------------------------------------------


class FakeSevGuest:
    """Plays the kernel's SNP_GET_EXT_REPORT: reads the request structs from memory."""

    def __init__(self, firmware: SimFirmware, certs: bytes) -> None:
        self.firmware = firmware
        self.certs = certs
        self.calls: list[tuple[int, int]] = []

    def __call__(self, fd: int, request: int, arg: Any) -> int:
        assert request == 0xC0205302  # _IOWR('S', 2, 32 bytes), from linux/sev-guest.h
        assert arg.msg_version == 1
        req = devguest.SnpExtReportReq.from_address(arg.req_data)
        self.calls.append((req.certs_len, req.data.vmpl))
        if req.certs_len < len(self.certs):
            req.certs_len = len(self.certs)  # the kernel says how much it needs
            arg.vmm_error = 1  # SNP_GUEST_VMM_ERR_INVALID_LEN
            raise OSError(errno.EINVAL, "Invalid argument")
        ctypes.memmove(req.certs_address, self.certs, len(self.certs))
        report = self.firmware.report(bytes(req.data.user_data))
        resp = bytearray(4000)
        resp[4:8] = (1184).to_bytes(4, "little")
        resp[0x20 : 0x20 + 1184] = report
        ctypes.memmove(arg.resp_data, bytes(resp), len(resp))
        return 0


def test_dev_sev_guest_extended_report(firmware: SimFirmware, tmp_path: Path) -> None:
    certs = firmware.cert_table().ljust(9000, b"\0")  # over one page: forces a retry
    fake = FakeSevGuest(firmware, certs)
    device = SevGuestDevice(
        path=tmp_path / "sev-guest", ioctl=fake, opener=lambda _: os.open(os.devnull, os.O_RDONLY)
    )
    device.path.touch()
    platform = SnpPlatform(tsm=ConfigfsTsm(tmp_path / "no-configfs"), device=device, linux=True)
    vcek, _, report = decode_extension(platform.evidence_extension(REPORT_DATA))
    assert vcek == firmware.state.vcek
    assert report[0x50:0x90] == REPORT_DATA
    assert fake.calls == [(4096, 0), (12288, 0)]  # 9000 rounded up to whole pages


def test_dev_sev_guest_busy(firmware: SimFirmware, tmp_path: Path) -> None:
    def busy(fd: int, request: int, arg: Any) -> int:
        arg.vmm_error = 2  # SNP_GUEST_VMM_ERR_BUSY
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    device = SevGuestDevice(
        path=tmp_path / "sev-guest", ioctl=busy, opener=lambda _: os.open(os.devnull, os.O_RDONLY)
    )
    with pytest.raises(PlatformError, match="rate-limiting requests, retry later"):
        device.report(REPORT_DATA)


def test_dev_sev_guest_permission(tmp_path: Path) -> None:
    def denied(path: Path) -> int:
        raise PermissionError(13, "Permission denied")

    device = SevGuestDevice(path=tmp_path / "sev-guest", opener=denied)
    with pytest.raises(PlatformError, match="permission denied"):
        device.report(REPORT_DATA)


def test_crl_from_the_host_travels_in_the_crl_list(
    firmware: SimFirmware, sim_state_dir: Path, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    from donjon.keep.platforms.snp import GUID_CRL

    ark_key = serialization.load_pem_private_key(
        (sim_state_dir / "sim" / "ark.key").read_bytes(), password=None
    )
    now = datetime.now(UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(firmware.state.ark.subject)
        .last_update(now)
        .next_update(now + timedelta(days=1))
        .sign(
            ark_key,  # type: ignore[arg-type]
            hashes.SHA384(),
            rsa_padding=padding.PSS(padding.MGF1(hashes.SHA384()), 48),
        )
    )
    crl_der = crl.public_bytes(Encoding.DER)
    table = build_cert_table(
        {GUID_VCEK: firmware.state.vcek.public_bytes(Encoding.DER), GUID_CRL: crl_der}
    )
    fake = FakeConfigfs(tmp_path, "sev_guest", lambda inblob: (firmware.report(inblob), table))
    _, crls, _ = decode_extension(
        platform_on_configfs(fake, tmp_path).evidence_extension(REPORT_DATA)
    )
    ((tag, content, _),) = crls
    (t_url, url, _), (_, _, der) = children(content)
    assert (tag, t_url) == (0x30, 0x0C)  # SEQUENCE { UTF8String url, CertificateList }
    assert url == b"https://kdsintf.amd.com/vcek/v1/Milan/crl"
    assert der == crl_der


def test_vlek_report_without_vlek_certificate(firmware: SimFirmware, tmp_path: Path) -> None:
    from dataclasses import replace

    from donjon.attestation.snp.report import SigningKey
    from donjon.keep.sim.report import build, sign

    def vlek_provider(inblob: bytes) -> tuple[bytes, bytes]:
        body = replace(
            build(firmware.state.config, firmware.guest, inblob), signing_key=SigningKey.VLEK
        )
        return sign(body, firmware.state.vcek_key), firmware.cert_table()  # table has no VLEK

    fake = FakeConfigfs(tmp_path, "sev_guest", vlek_provider)
    with pytest.raises(SnpPlatformError, match="signed by a VLEK but the host gave no VLEK"):
        platform_on_configfs(fake, tmp_path).evidence_extension(REPORT_DATA)
