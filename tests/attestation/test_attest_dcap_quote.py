"""SGX and TDX quotes: every vector parsed field by field against expected.json, serialised
back byte for byte, and every malformation refused with its own, named reason."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from dcap_support import dcap_vectors, load_quote

from donjon.attestation.dcap import layout
from donjon.attestation.dcap.pck import (
    SGX_EXTENSION_OID,
    encode_sgx_extension,
    parse_sgx_extension,
    pck_extensions,
)
from donjon.attestation.dcap.quote import parse_quote
from donjon.attestation.dcap.verify import split_pem_or_der
from donjon.attestation.errors import (
    MalformedEvidenceError,
    ReservedFieldError,
    UnsupportedVersionError,
)

#: Where the signature data starts in a v4 quote (header 48 + TD 1.0 body 584).
V4_SIG_DATA = 48 + 584


@pytest.fixture(scope="module")
def quotes(vectors: Path, expected: dict[str, Any]) -> list[tuple[dict[str, Any], bytes]]:
    return [(v, load_quote(vectors, v)) for v in dcap_vectors(expected)]


def by_id(quotes: list[tuple[dict[str, Any], bytes]], vector_id: str) -> bytes:
    return next(raw for v, raw in quotes if v["id"] == vector_id)


def test_every_dcap_vector_is_covered(quotes: list[tuple[dict[str, Any], bytes]]) -> None:
    ids = {v["id"] for v, _ in quotes}
    assert len(ids) == 13  # 9 real TDX + 1 QVL TDX, 3 real SGX + 1 QVL SGX (SOURCES.md)
    assert {"tdx-v4-phala", "tdx-v5-phala-outdated", "sgx-v3-phala"} <= ids


def test_fields_match_expected(quotes: list[tuple[dict[str, Any], bytes]]) -> None:
    for vector, raw in quotes:
        parsed = vector["computed"]["parsed"]
        shown = parse_quote(raw).to_dict()
        for part in ("header", "body", "qe_report"):
            for key, value in parsed.get(part, {}).items():
                assert shown[part if part != "qe_report" else "qe_report"][key] == value, (
                    vector["id"],
                    part,
                    key,
                )
        if "body_type" in parsed:
            assert shown["body_type"] == parsed["body_type"], vector["id"]


def test_every_vector_round_trips_byte_for_byte(
    quotes: list[tuple[dict[str, Any], bytes]],
) -> None:
    for vector, raw in quotes:
        quote = parse_quote(raw)
        assert quote.to_bytes() == raw, vector["id"]
        # Built from its fields (no raw bytes kept), the signed region is identical too.
        rebuilt = type(quote)(
            quote.header, quote.body, quote.signature, quote.attestation_key, quote.qe,
            quote.body_type, quote.trailing,
        )  # fmt: skip
        assert rebuilt.signed_bytes() == quote.signed_bytes(), vector["id"]
        assert rebuilt.to_bytes() == raw, vector["id"]


def test_v5_td15_fields(quotes: list[tuple[dict[str, Any], bytes]], expected: Any) -> None:
    raw = by_id(quotes, "tdx-v5-phala-outdated")
    quote = parse_quote(raw)
    assert quote.header.version == 5 and quote.body_type == layout.BODY_TD15
    assert quote.body.to_dict()["tee_tcb_svn2"] == "0d010300000000000000000000000000"
    assert quote.body.to_dict()["mrservicetd"] == "00" * 48


def test_sgx_attributes_are_decoded(quotes: list[tuple[dict[str, Any], bytes]]) -> None:
    quote = parse_quote(by_id(quotes, "sgx-v3-phala"))
    decoded = quote.body.to_dict()["attributes_decoded"]
    # attributes 0500000000000000e700000000000000 (expected.json): INIT | MODE64BIT
    assert decoded["init"] and decoded["mode64bit"]
    assert not decoded["debug"] and not decoded["kss"] and not decoded["provisionkey"]
    assert decoded["xfrm"] == "0xe7"


def test_td_attributes_are_decoded(quotes: list[tuple[dict[str, Any], bytes]]) -> None:
    phala = parse_quote(by_id(quotes, "tdx-v4-phala")).body.to_dict()
    assert phala["td_attributes_decoded"]["sept_ve_disable"]  # 0000001000000000: bit 28
    assert not phala["td_attributes_decoded"]["debug"]
    google = parse_quote(by_id(quotes, "tdx-v4-go-tdx-guest")).body.to_dict()
    assert google["td_attributes_decoded"]["pks"]  # 0000004000000000: bit 30


def test_zero_padding_and_trailing_bytes_are_kept(
    quotes: list[tuple[dict[str, Any], bytes]],
) -> None:
    phala = parse_quote(by_id(quotes, "tdx-v4-phala"))
    assert phala.trailing == bytes(70)  # a 5006-byte buffer holding a 4936-byte quote
    google = parse_quote(by_id(quotes, "tdx-v4-go-tdx-guest"))
    assert google.trailing == b"\nextra bytes(only for testing purpose)\n"


def test_pck_extensions_match_go_tdx_guest(
    quotes: list[tuple[dict[str, Any], bytes]], expected: Any
) -> None:
    vector = next(v for v in dcap_vectors(expected) if v["id"] == "tdx-v4-go-tdx-guest")
    ext_expected = vector["computed"]["pck_ext"]
    quote = parse_quote(by_id(quotes, "tdx-v4-go-tdx-guest"))
    leaf = split_pem_or_der(quote.qe.certification.data)[0]
    ext = pck_extensions(leaf)
    assert ext.ppid.hex() == ext_expected["1"]
    assert ext.pceid.hex() == ext_expected["3"]
    assert ext.fmspc.hex() == ext_expected["4"]
    assert [*ext.tcb.components, ext.tcb.pcesvn] == ext_expected["tcb"]
    assert ext.tcb.cpusvn.hex() == "03030202020100020000000000000000"  # upstream's CPUSVN


def test_pck_extension_round_trips(quotes: list[tuple[dict[str, Any], bytes]]) -> None:
    for vector, raw in quotes:
        quote = parse_quote(raw)
        if quote.qe.certification.type != layout.CERT_PCK_CHAIN:
            continue
        certs = split_pem_or_der(quote.qe.certification.data)
        leaf = next(c for c in certs if "PCK Certificate" in c.subject.rfc4514_string())
        value = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
        der = value.value.value  # type: ignore[attr-defined]
        assert encode_sgx_extension(parse_sgx_extension(der)) == der, vector["id"]


# --- malformations -------------------------------------------------------------------------


def _patched(raw: bytes, offset: int, value: bytes) -> bytes:
    out = bytearray(raw)
    out[offset : offset + len(value)] = value
    return bytes(out)


@pytest.mark.parametrize(
    ("offset", "value", "error", "words"),
    [
        (0, struct.pack("<H", 3), UnsupportedVersionError, "must be an SGX quote"),
        (0, struct.pack("<H", 6), UnsupportedVersionError, "version 6 is not supported"),
        (2, struct.pack("<H", 3), UnsupportedVersionError, "ECDSA-384-with-P-384"),
        (2, struct.pack("<H", 9), UnsupportedVersionError, "attestation key type 9"),
        (4, struct.pack("<I", 0x42), UnsupportedVersionError, "TEE type 0x42 is unknown"),
        (8, b"\x01", ReservedFieldError, "reserved bytes 8..12"),
        (V4_SIG_DATA, struct.pack("<I", 10**6), MalformedEvidenceError, "runs past the end"),
        (V4_SIG_DATA + 4 + 128, struct.pack("<H", 5), MalformedEvidenceError, "must be type 6"),
        (V4_SIG_DATA + 4 + 130, struct.pack("<I", 7), MalformedEvidenceError, "does not fill"),
    ],
)
def test_header_and_length_errors(
    quotes: list[tuple[dict[str, Any], bytes]],
    offset: int,
    value: bytes,
    error: type[Exception],
    words: str,
) -> None:
    raw = by_id(quotes, "tdx-v4-trustee-4")
    with pytest.raises(error, match=words):
        parse_quote(_patched(raw, offset, value))


def test_v5_unknown_body_type_and_size(quotes: list[tuple[dict[str, Any], bytes]]) -> None:
    raw = by_id(quotes, "tdx-v5-phala-outdated")
    with pytest.raises(UnsupportedVersionError, match="body type 1"):
        parse_quote(_patched(raw, 48, struct.pack("<H", 1)))
    with pytest.raises(UnsupportedVersionError, match="body type 7"):
        parse_quote(_patched(raw, 48, struct.pack("<H", 7)))
    with pytest.raises(MalformedEvidenceError, match="must be 648 bytes"):
        parse_quote(_patched(raw, 50, struct.pack("<I", 584)))


def test_reserved_bytes_of_reports_are_checked(
    quotes: list[tuple[dict[str, Any], bytes]],
) -> None:
    sgx = by_id(quotes, "sgx-v3-phala")
    for name, offset, size in layout.SGX_FIELDS:
        if name.startswith("reserved"):
            bad = _patched(sgx, 48 + offset + size - 1, b"\x01")
            with pytest.raises(ReservedFieldError, match="enclave report: reserved"):
                parse_quote(bad)
    qe_report = 48 + 384 + 4 + 128  # v3: the QE report follows the attestation key
    with pytest.raises(ReservedFieldError, match="QE report: reserved"):
        parse_quote(_patched(sgx, qe_report + 96, b"\x01"))


def test_every_truncation_is_refused(quotes: list[tuple[dict[str, Any], bytes]]) -> None:
    raw = by_id(quotes, "tdx-v4-trustee-4")  # exactly one quote, no padding
    for cut in range(0, len(raw), 97):
        with pytest.raises(MalformedEvidenceError):
            parse_quote(raw[:cut])


def test_unknown_certification_type_is_refused(
    quotes: list[tuple[dict[str, Any], bytes]],
) -> None:
    raw = by_id(quotes, "sgx-v3-phala")
    auth = 48 + 384 + 4 + 128 + 384 + 64
    cert_type = auth + 2 + 32
    with pytest.raises(MalformedEvidenceError, match="unknown certification data type 9"):
        parse_quote(_patched(raw, cert_type, struct.pack("<H", 9)))


def test_qvl_sgx_sample_parses_with_its_ppid_certification_data(
    quotes: list[tuple[dict[str, Any], bytes]], expected: Any
) -> None:
    vector = next(v for v in dcap_vectors(expected) if v["id"] == "sgx-intel-qvl-sample")
    quote = parse_quote(by_id(quotes, "sgx-intel-qvl-sample"))
    assert quote.qe.certification.type == vector["computed"]["cert_data_type"] == 1


def test_qvl_tdx_sample_carries_der_under_type_5(
    quotes: list[tuple[dict[str, Any], bytes]],
) -> None:
    quote = parse_quote(by_id(quotes, "tdx-intel-qvl-sample"))
    certs = split_pem_or_der(quote.qe.certification.data)
    names = [c.subject.rfc4514_string().split("CN=")[-1].split(",")[0] for c in certs]
    # Intel's synthetic sample lists the root first (SOURCES.md note 9).
    assert names == ["Intel SGX Root CA", "Intel SGX PCK Processor CA", "Intel SGX PCK Certificate"]


def test_pck_extension_strictness(quotes: list[tuple[dict[str, Any], bytes]]) -> None:
    quote = parse_quote(by_id(quotes, "tdx-v4-phala"))
    leaf = split_pem_or_der(quote.qe.certification.data)[0]
    ext = pck_extensions(leaf)
    der = encode_sgx_extension(ext)
    with pytest.raises(MalformedEvidenceError, match="trailing bytes"):
        parse_sgx_extension(der + b"\x00")
    with pytest.raises(MalformedEvidenceError):
        parse_sgx_extension(der[:-3])
    from dataclasses import replace

    with pytest.raises(MalformedEvidenceError, match="FMSPC is 5 bytes"):
        parse_sgx_extension(encode_sgx_extension(replace(ext, fmspc=b"\x00" * 5)))
    with pytest.raises(MalformedEvidenceError, match="unknown SGX type 7"):
        parse_sgx_extension(encode_sgx_extension(replace(ext, sgx_type=7)))
