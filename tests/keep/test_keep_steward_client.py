"""The Keep's side of Enarx's Steward protocol, against a small HTTPS stand-in Steward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation.claims import WorkloadClaims
from donjon.keep import identity
from donjon.keep.platforms import nil
from donjon.keep.steward_client import (
    StewardBadResponse,
    StewardClient,
    StewardRefused,
    StewardUnreachable,
    parse_chain,
)
from support.pki import der, der_sequence


def make_csr(claims: WorkloadClaims) -> x509.CertificateSigningRequest:
    platform = nil.create(None)
    return identity.build_csr(identity.generate_key(platform), claims, platform)


def test_issues_ca_and_leaf(steward, steward_ca, claims: WorkloadClaims) -> None:  # type: ignore[no-untyped-def]
    url, bundle, responders = steward
    csr = make_csr(claims)

    responders.append(steward_ca.responder())
    chain = StewardClient(url, bundle).request(csr)
    assert [c.subject for c in chain] == [
        steward_ca.cert.subject,
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "keep")]),
    ]
    assert chain[1].public_key() == csr.public_key()


def test_refusal_carries_problem_detail(steward, claims: WorkloadClaims) -> None:  # type: ignore[no-untyped-def]
    url, bundle, responders = steward
    problem = {"type": "about:blank", "title": "Forbidden", "detail": "debug TEE refused by policy"}
    responders.append(lambda b, c: (403, "application/problem+json", json.dumps(problem).encode()))
    with pytest.raises(StewardRefused) as info:
        StewardClient(url, bundle).request(make_csr(claims))
    assert str(info.value) == (
        f"steward {url} refused the certificate request: HTTP 403: debug TEE refused by policy"
    )


def test_leaf_for_another_key_is_refused(steward, steward_ca, claims: WorkloadClaims) -> None:  # type: ignore[no-untyped-def]
    url, bundle, responders = steward
    other = steward_ca.sign(ec.generate_private_key(ec.SECP256R1()).public_key())
    responders.append(lambda b, c: (200, "x", der_sequence([der(steward_ca.cert), der(other)])))
    with pytest.raises(StewardBadResponse, match="different key"):
        StewardClient(url, bundle).request(make_csr(claims))


def test_leaf_not_signed_by_the_ca_is_refused(
    steward, steward_ca, other_ca, claims: WorkloadClaims
) -> None:  # type: ignore[no-untyped-def]
    url, bundle, responders = steward
    csr = make_csr(claims)
    leaf = other_ca.sign(csr.public_key())
    responders.append(lambda b, c: (200, "x", der_sequence([der(steward_ca.cert), der(leaf)])))
    with pytest.raises(StewardBadResponse, match="chain is broken"):
        StewardClient(url, bundle).request(csr)


def test_untrusted_steward_certificate_is_unreachable(
    steward, other_ca, tmp_path: Path, claims: WorkloadClaims
) -> None:  # type: ignore[no-untyped-def]
    url, _, responders = steward
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(other_ca.cert.public_bytes(serialization.Encoding.PEM))
    responders.append(lambda b, c: (500, "text/plain", b"never"))
    with pytest.raises(StewardUnreachable, match="certificate verify failed"):
        StewardClient(url, wrong).request(make_csr(claims))


def test_closed_port_is_unreachable(claims: WorkloadClaims) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        StewardUnreachable, match=rf"steward https://127\.0\.0\.1:{port}/: unreachable"
    ):
        StewardClient(f"https://127.0.0.1:{port}/", timeout_s=2).request(make_csr(claims))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x30\x03\x02\x01\x01", "not a DER certificate list"),
        (b"\x30\x00", "has 0 certificate"),
        (b"\x30\x00\x00", "1 trailing bytes"),
        (b"<html>", "not a DER certificate list"),
    ],
)
def test_malformed_chains(payload: bytes, message: str) -> None:
    with pytest.raises(StewardBadResponse, match=message):
        parse_chain(payload)
