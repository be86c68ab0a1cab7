"""Bare DCAP quotes as files: recognising them (raw, hex, base64) and decoding them for display.

``donjon attest show|verify FILE`` sniffs a file with these; the header must
look like a DCAP quote of the right TEE (version 3, 4 or 5, a known key type).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from donjon.attestation.dcap import layout
from donjon.attestation.dcap.pck import pck_extensions
from donjon.attestation.dcap.quote import parse_quote
from donjon.attestation.dcap.verify import split_pem_or_der
from donjon.attestation.errors import MalformedEvidenceError

Sniffer = Callable[[bytes], "bytes | None"]


def show_quote(data: bytes) -> dict[str, Any]:
    """A quote's fields (and its PCK's SGX extension), decoded without verifying anything."""
    quote = parse_quote(data)
    shown: dict[str, Any] = {"tee": quote.tee, "quote": quote.to_dict()}
    cert = quote.qe.certification
    if cert.type == layout.CERT_PCK_CHAIN:
        try:
            certs = split_pem_or_der(cert.data)
            leaf = next(c for c in certs if "PCK Certificate" in c.subject.rfc4514_string())
            shown["pck"] = pck_extensions(leaf).to_dict()
            shown["pck_chain"] = [c.subject.rfc4514_string() for c in certs]
        except (MalformedEvidenceError, StopIteration, ValueError) as exc:
            shown["pck"] = f"not decoded: {exc}"
    return shown


def _quote_header(data: bytes, tee: int) -> bool:
    if len(data) < layout.HEADER_SIZE:
        return False
    version = int.from_bytes(data[0:2], "little")
    key_type = int.from_bytes(data[2:4], "little")
    tee_type = int.from_bytes(data[4:8], "little")
    return version in (3, 4, 5) and key_type in (2, 3) and tee_type == tee


def sniff_raw(tee: int) -> Sniffer:
    def sniff(data: bytes) -> bytes | None:
        return data if _quote_header(data, tee) else None

    return sniff


def sniff_hex(tee: int) -> Sniffer:
    def sniff(data: bytes) -> bytes | None:
        text = b"".join(data.split())
        if len(text) < 2 * layout.HEADER_SIZE or len(text) % 2:
            return None
        try:
            raw = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None
        return raw if _quote_header(raw, tee) else None

    return sniff


def sniff_base64(tee: int) -> Sniffer:
    def sniff(data: bytes) -> bytes | None:
        text = b"".join(data.split())
        if len(text) < 64:
            return None
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw if _quote_header(raw, tee) else None

    return sniff


def quote_platform(data: bytes) -> tuple[str, bytes, str]:
    """(TEE, FMSPC, PCK CA kind) of a quote, read from its PCK certificate (not verified):
    what a collateral fetch asks Intel PCS for."""
    from donjon.attestation.dcap.chain import PCK_CA_CNS, common_name

    quote = parse_quote(data)
    cert = quote.qe.certification
    if cert.type != layout.CERT_PCK_CHAIN:
        raise MalformedEvidenceError(
            f"the quote carries certification data type {cert.type}, not its PCK chain (type 5)"
        )
    certs = split_pem_or_der(cert.data)
    leaves = [c for c in certs if "PCK Certificate" in common_name(c.subject)]
    if len(leaves) != 1:
        raise MalformedEvidenceError("the quote's chain holds no single PCK certificate")
    kind = PCK_CA_CNS.get(common_name(leaves[0].issuer))
    if kind is None:
        raise MalformedEvidenceError("the PCK certificate's issuer is not an Intel PCK CA")
    return quote.tee, pck_extensions(leaves[0]).fmspc, kind


def quote_of_extension(oid: str, value: bytes) -> bytes | None:
    """The DCAP quote inside a CSR evidence extension (Donjon TDX, sim TDX, Enarx SGX)."""
    from donjon.attestation import oids
    from donjon.attestation.sgx.evidence import decode_enarx_sgx
    from donjon.attestation.tdx.evidence import decode_tdx_evidence

    if oid in (oids.EVIDENCE_TDX.dotted_string, oids.EVIDENCE_SIM_TDX.dotted_string):
        return decode_tdx_evidence(value).quote
    if oid == oids.ENARX_SGX.dotted_string:
        return decode_enarx_sgx(value).quote
    return None
