"""Fuzzed CCA tokens, Nitro documents and RA-TLS certificates: every one gets a verdict, and
none is accepted; no exception and no warning escapes the verifier."""

from __future__ import annotations

import contextlib
import warnings
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.attestation import Policy, TrustStore
from donjon.attestation.cca.anchors import load_cpak
from donjon.attestation.cca.token import parse_token
from donjon.attestation.csr import verify_evidence
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.nitro.document import parse_document
from donjon.attestation.nitro.ratls import document_in, load_ratls_certificate, spki_of
from donjon.attestation.registry import VerifyOptions
from donjon.attestation.verifiers import REGISTRY

FILES = {
    "cca": "cca/trustee/cca-example-token.cbor",
    "nitro": "nitro/evervault/valid-attestation-doc.cose",
    "ratls": "nitro/evervault/non-debug-cert-containing-attestation-document-18-1-23-der.crt",
}
FORMS = {
    "cca": "Arm CCA attestation token",
    "nitro": "AWS Nitro attestation document",
    "ratls": "RA-TLS certificate carrying a Nitro document",
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_parsers(data: bytes) -> None:
    for parse in (parse_token, parse_document):
        with contextlib.suppress(MalformedEvidenceError):
            parse(data)


@settings(
    max_examples=90,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzz_mutated_evidence_gives_a_verdict(data: st.DataObject, vectors: Path) -> None:
    kind = data.draw(st.sampled_from(sorted(FILES)))
    blob = bytearray((vectors / FILES[kind]).read_bytes())
    action = data.draw(st.sampled_from(["flip", "cut", "extend"]))
    if action == "flip":
        index = data.draw(st.integers(0, len(blob) - 1))
        blob[index] ^= data.draw(st.integers(1, 255))
    elif action == "cut":
        del blob[data.draw(st.integers(1, len(blob) - 1)) :]
    else:
        blob += data.draw(st.binary(min_size=1, max_size=16))
    form = next(f for f in REGISTRY.bare_formats if f.name == FORMS[kind])
    anchors = load_cpak(vectors / "cca/trustee/cpak-pub.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verdict = verify_evidence(
            bytes(blob),
            form,
            policy=Policy.default(),
            trust=TrustStore(),
            now=datetime(2023, 1, 18, 15, 20, tzinfo=UTC),
            options=VerifyOptions(material={"cca_anchors": anchors, "nitro_time": "document"}),
        )
    if verdict.accepted:
        # An RA-TLS certificate only carries the evidence: a change outside the document
        # and the public key (its name, dates, its own signature) leaves it genuine.
        assert kind == "ratls", f"{kind} {action} accepted"
        original = carried((vectors / FILES[kind]).read_bytes())
        assert carried(bytes(blob)) == original, "a changed document or key was accepted"
        return
    assert verdict.error is not None and verdict.reason is not None


def carried(data: bytes) -> tuple[bytes | None, bytes]:
    cert = load_ratls_certificate(data)
    assert cert is not None
    return document_in(cert), spki_of(cert)
