"""Recognise what a file of evidence holds: a Keep CSR, or a bare form the registry knows.

``donjon attest`` and the Steward's console both take "a file" from a person
and must decide, without trusting it, which verifier judges it. The order is
fixed: a PEM CSR, then each bare form the registry lists (a raw or hex SNP
report, quotes, tokens...), then a DER CSR. Nothing here verifies anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation.csr import verify_csr, verify_evidence
from donjon.attestation.policy import Policy
from donjon.attestation.registry import BareFormat, Registry, VerifyOptions
from donjon.attestation.trust import TrustStore
from donjon.attestation.verdict import Verdict
from donjon.attestation.verifiers import REGISTRY
from donjon.attestation.x509util import X509_LOAD_ERRORS
from donjon.errors import plain

PEM_CSR_MARKER = b"-----BEGIN CERTIFICATE REQUEST-----"


class UnrecognisedEvidence(ValueError):
    """The bytes are neither a Keep CSR nor any evidence form the registry knows."""


@dataclass(frozen=True)
class Evidence:
    """A file's evidence: a Keep CSR (DER), or bare evidence of a registered form."""

    data: bytes
    form: str  # how it was found, for display
    bare: BareFormat | None  # None: a CSR

    @property
    def kind(self) -> str:
        return "csr" if self.bare is None else "bare"


def known_forms(registry: Registry = REGISTRY) -> list[str]:
    """What :func:`recognise` accepts, in words (for the refusal message)."""
    return ["PEM or DER CSR", *(f.name for f in registry.bare_formats)]


def recognise(data: bytes, registry: Registry = REGISTRY) -> Evidence:
    """The evidence in ``data``, or :class:`UnrecognisedEvidence` saying what is accepted."""
    text = data.strip()
    if PEM_CSR_MARKER in text:
        try:
            csr = x509.load_pem_x509_csr(text)
        except X509_LOAD_ERRORS as exc:
            raise UnrecognisedEvidence(f"PEM CSR is malformed ({plain(exc)})") from exc
        return Evidence(csr.public_bytes(Encoding.DER), "PEM CSR", None)
    found = registry.recognise(data)
    if found is not None:
        form, evidence = found
        return Evidence(evidence, form.name, form)
    if data[:1] == b"\x30":
        try:
            x509.load_der_x509_csr(data)
        except X509_LOAD_ERRORS:
            pass
        else:
            return Evidence(data, "DER CSR", None)
    forms = ", ".join(known_forms(registry)[1:])
    raise UnrecognisedEvidence(
        f"not a Keep CSR or any known evidence ({forms}); {len(data)} bytes"
    )


def verify_recognised(
    evidence: Evidence,
    *,
    policy: Policy,
    trust: TrustStore,
    now: datetime,
    options: VerifyOptions | None = None,
) -> Verdict:
    """Judge recognised evidence as ``donjon attest verify`` does: a CSR whole, bare evidence
    without a key binding. Never raises for bad input (the verdict says what failed)."""
    if evidence.bare is None:
        return verify_csr(evidence.data, policy=policy, trust=trust, now=now, options=options)
    return verify_evidence(
        evidence.data, evidence.bare, policy=policy, trust=trust, now=now, options=options
    )
