"""SNP report parsing against expected.json, the serializer, and malformed input."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from attest_fakes import SNP_IDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.attestation.errors import (
    MalformedEvidenceError,
    ProductMismatchError,
    ReservedFieldError,
    UnsupportedVersionError,
)
from donjon.attestation.snp import layout
from donjon.attestation.snp.product import Product
from donjon.attestation.snp.report import SnpReport, TcbVersion, parse_report


def test_every_snp_vector_is_covered(snp_vectors: list[dict[str, Any]]) -> None:
    assert sorted(v["id"] for v in snp_vectors) == sorted(SNP_IDS)


@pytest.mark.parametrize("vid", SNP_IDS)
def test_fields_match_expected(
    vid: str,
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
) -> None:
    vector = vector_by_id(vid)
    want = vector["computed"]["report"]
    raw = load_report(vector)
    report = parse_report(raw)
    assert report.version == want["version"]
    assert report.guest_svn == want["guest_svn"]
    assert report.policy.raw == int(want["policy"], 16)
    for name, value in want["policy_decoded"].items():
        assert getattr(report.policy, name) == value, name
    assert report.family_id.hex() == want["family_id"]
    assert report.image_id.hex() == want["image_id"]
    assert report.vmpl == want["vmpl"]
    assert report.signature_algo == want["sig_algo"]
    assert report.platform_info.raw == int(want["platform_info"], 16)
    assert report.signing_key.name == want["signing_key"]
    key_info = int(want["key_info"], 16)
    assert report.author_key_en == bool(key_info & 1)
    assert report.mask_chip_key == bool(key_info & 2)
    for name in (
        "report_data",
        "measurement",
        "host_data",
        "id_key_digest",
        "author_key_digest",
        "report_id",
        "chip_id",
    ):
        assert getattr(report, name).hex() == want[name], name
    for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        assert getattr(report, name).components() == want[name], name
    assert report.reported_tcb.raw == int(want["reported_tcb_raw"], 16)
    assert str(report.current_fw) == want["current_fw"]
    assert str(report.committed_fw) == want["committed_fw"]
    cpuid = want["cpuid_fam_mod_step"]
    if cpuid is None:
        assert report.cpuid is None
    else:
        assert report.cpuid == (int(cpuid[0], 16), int(cpuid[1], 16), cpuid[2])
    if "launch_mit_vector" in want:
        assert report.launch_mit_vector == int(want["launch_mit_vector"], 16)
        assert report.current_mit_vector == int(want["current_mit_vector"], 16)


@pytest.mark.parametrize("vid", SNP_IDS)
def test_serializer_round_trips(
    vid: str,
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
) -> None:
    raw = load_report(vector_by_id(vid))
    assert parse_report(raw).to_bytes() == raw


def test_product_from_cpuid() -> None:
    # AMD family 19h model 01h = Milan, 11h = Genoa; family 1Ah = Turin (vendor facts).
    assert Product.from_cpuid(0x19, 0x01) is Product.MILAN
    assert Product.from_cpuid(0x19, 0x11) is Product.GENOA
    assert Product.from_cpuid(0x1A, 0x02) is Product.TURIN
    with pytest.raises(ProductMismatchError):
        Product.from_cpuid(0x17, 0x31)


def test_turin_tcb_layout() -> None:
    # Turin: [fmc, bl, tee, snp, 0, 0, 0, ucode]; Milan: [bl, tee, 0, 0, 0, 0, snp, ucode].
    raw = int.from_bytes(bytes([1, 2, 3, 4, 0, 0, 0, 9]), "little")
    assert TcbVersion.decode(raw, turin=True) == TcbVersion(bl=2, tee=3, snp=4, ucode=9, fmc=1)
    milan = int.from_bytes(bytes([2, 0, 0, 0, 0, 0, 5, 68]), "little")
    assert milan == 0x4405000000000002  # go-sev-guest reported_tcb_raw in expected.json
    assert TcbVersion.decode(milan, turin=False) == TcbVersion(bl=2, tee=0, snp=5, ucode=68)
    assert TcbVersion(bl=2, tee=3, snp=4, ucode=9, fmc=1).raw == raw


def test_builder_defaults_make_a_parsable_v3_report() -> None:
    report = SnpReport(cpuid=(0x19, 0x11, 0x01), measurement=b"\x11" * 48)
    raw = report.to_bytes()
    assert len(raw) == 1184
    assert raw[0x90 : 0x90 + 48] == b"\x11" * 48
    assert raw[0x188:0x18B] == bytes([0x19, 0x11, 0x01])
    assert parse_report(raw).product is Product.GENOA


@pytest.mark.parametrize("size", [0, 1, 1183, 1185, 2368])
def test_wrong_size_is_a_clean_error(
    size: int, vector_by_id: Callable[[str], dict[str, Any]], load_report: Callable[..., bytes]
) -> None:
    raw = load_report(vector_by_id("snp-milan-v2-virtee"))
    data = (raw * 2)[:size]
    with pytest.raises(MalformedEvidenceError, match="expected 1184 bytes"):
        parse_report(data)


@pytest.mark.parametrize("version", [0, 1, 4, 6, 0xFFFFFFFF])
def test_unknown_versions_are_refused(
    version: int, vector_by_id: Callable[[str], dict[str, Any]], load_report: Callable[..., bytes]
) -> None:
    raw = bytearray(load_report(vector_by_id("snp-milan-v2-virtee")))
    raw[0:4] = version.to_bytes(4, "little")
    with pytest.raises(UnsupportedVersionError):
        parse_report(bytes(raw))


@pytest.mark.parametrize(
    "offset",
    [0x04C, 0x188, 0x19F, 0x1EB, 0x1EF, 0x1F8, 0x29F, 0x330, 0x49F, 0x03A, 0x183],
)
def test_reserved_bytes_must_be_zero(
    offset: int, vector_by_id: Callable[[str], dict[str, Any]], load_report: Callable[..., bytes]
) -> None:
    # 0x03A is inside current_tcb's reserved bytes (Milan layout), 0x183 inside reported_tcb's.
    raw = bytearray(load_report(vector_by_id("snp-milan-v2-virtee")))
    raw[offset] ^= 0x01
    with pytest.raises(ReservedFieldError):
        parse_report(bytes(raw))
    assert parse_report(bytes(raw), strict=False).version == 2


def test_policy_reserved_bits() -> None:
    bad = SnpReport(cpuid=(0x19, 1, 1)).to_bytes()
    data = bytearray(bad)
    data[0x08:0x10] = (1 << 26 | 1 << 17).to_bytes(8, "little")
    with pytest.raises(ReservedFieldError, match="policy bits"):
        parse_report(bytes(data))
    data[0x08:0x10] = (0).to_bytes(8, "little")
    with pytest.raises(ReservedFieldError, match="bit 17"):
        parse_report(bytes(data))


def test_layout_fields_do_not_overlap() -> None:
    spans = sorted((f.offset, f.end) for f in layout.FIELDS)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    assert layout.FIELD_BY_NAME["signature_r"].offset == 0x2A0
    assert layout.FIELD_BY_NAME["chip_id"].offset == 0x1A0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=1300))
def test_fuzz_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidenceError):
        parse_report(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1184, max_size=1184), st.sampled_from([2, 3, 5]))
def test_fuzz_full_size_reports_never_crash(data: bytes, version: int) -> None:
    raw = version.to_bytes(4, "little") + data[4:]
    for strict in (True, False):
        try:
            report = parse_report(raw, strict=strict)
        except MalformedEvidenceError:
            continue
        report.to_dict()
        assert report.to_bytes()[:0x2A0] == raw[:0x2A0] or not strict


def test_struct_format_agrees_with_field_offsets() -> None:
    # Pack a distinct value into every field, then find each one at its documented offset.
    values: list[bytes | int] = []
    for i, name in enumerate(layout.REPORT_STRUCT_FIELDS):
        spec = layout.FIELD_BY_NAME[name]
        if spec.kind == "bytes":
            values.append(bytes([i + 1]) * spec.size)
        else:
            values.append(i + 1)
    raw = layout.REPORT_STRUCT.pack(*values)
    assert len(raw) == 1184
    for i, name in enumerate(layout.REPORT_STRUCT_FIELDS):
        spec = layout.FIELD_BY_NAME[name]
        chunk = raw[spec.offset : spec.end]
        if spec.kind == "bytes":
            assert chunk == bytes([i + 1]) * spec.size, name
        else:
            assert int.from_bytes(chunk, "little") == i + 1, name
