"""Enarx's Steward wire formats (kept so Enarx Keeps and clients work).

* ``application/pkcs10``: the body is one DER CSR; the answer is a DER
  ``SEQUENCE OF Certificate`` ``[CA, leaf]``.
* ``application/vnd.steward.pkcs10-bundle.v1``: the body is a DER
  ``SEQUENCE OF CertificationRequest``; the answer is
  ``Output ::= SEQUENCE { chain SEQUENCE OF Certificate, issued SEQUENCE OF Certificate }``.

The outer sequences are split with pyasn1 (``Any`` keeps each element's full
DER); the elements themselves are parsed by ``cryptography``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyasn1.codec.der import decoder, encoder
from pyasn1.type import namedtype, univ

from donjon.attestation.der import DECODE_ERRORS
from donjon.errors import plain
from donjon.steward.errors import MalformedRequest

PKCS10 = "application/pkcs10"
BUNDLE = "application/vnd.steward.pkcs10-bundle.v1"
CERT_SEQUENCE = "application/pkix-cert-sequence"  # not registered; Enarx answers untyped DER
MAX_BUNDLE = 16


class _AnySequence(univ.SequenceOf):
    componentType = univ.Any()


class _Output(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("chain", _AnySequence()),
        namedtype.NamedType("issued", _AnySequence()),
    )


def _sequence_of(items: Sequence[bytes]) -> _AnySequence:
    value = _AnySequence()
    for i, der in enumerate(items):
        value[i] = univ.Any(der)
    return value


def encode_certificates(certificates: Sequence[bytes]) -> bytes:
    """DER ``SEQUENCE OF Certificate`` from already-DER certificates."""
    return bytes(encoder.encode(_sequence_of(certificates)))


def encode_bundle_output(chain: Sequence[bytes], issued: Sequence[bytes]) -> bytes:
    value = _Output()
    value["chain"] = _sequence_of(chain)
    value["issued"] = _sequence_of(issued)
    return bytes(encoder.encode(value))


def split_sequence(der: bytes, what: str) -> list[bytes]:
    """The DER elements of a ``SEQUENCE OF`` (strict: no trailing bytes)."""
    try:
        value, rest = decoder.decode(der, asn1Spec=_AnySequence())
    except DECODE_ERRORS as exc:
        raise MalformedRequest(
            f"{what}: not a DER SEQUENCE OF: {plain(exc)}", check="bundle"
        ) from None
    if rest:
        raise MalformedRequest(f"{what}: {len(rest)} trailing bytes", check="bundle")
    return [bytes(item) for item in value]


def decode_bundle(der: bytes) -> list[bytes]:
    """The CSRs of a ``pkcs10-bundle.v1`` body, each as DER."""
    csrs = split_sequence(der, "pkcs10 bundle")
    if not csrs:
        raise MalformedRequest("pkcs10 bundle is empty", check="bundle")
    if len(csrs) > MAX_BUNDLE:
        raise MalformedRequest(
            f"pkcs10 bundle holds {len(csrs)} requests, at most {MAX_BUNDLE} allowed",
            check="bundle",
        )
    return csrs


def decode_bundle_output(der: bytes) -> tuple[list[bytes], list[bytes]]:
    """Client side of the bundle answer: (chain, issued)."""
    try:
        value, rest = decoder.decode(der, asn1Spec=_Output())
    except DECODE_ERRORS as exc:
        raise MalformedRequest(f"bundle answer: not valid DER: {plain(exc)}") from None
    if rest:
        raise MalformedRequest(f"bundle answer: {len(rest)} trailing bytes")
    return [bytes(c) for c in value["chain"]], [bytes(c) for c in value["issued"]]
