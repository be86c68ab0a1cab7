"""Verify a Nitro attestation document: parse, chain to the pinned AWS root, signature, time.

Each step records a check and stops with its own error type:

* ``nitro.document``: the COSE_Sign1 and its payload parse strictly;
* ``nitro.chain``: leaf -> cabundle -> AWS root (pinned fingerprint), see ``chain.py``;
* ``nitro.validity``: every certificate is valid at the evaluation time;
* ``nitro.signature``: the leaf's key signed the document (ES384);
* ``nitro.timestamp``: the document was made while its leaf was valid, and not in
  the future of the evaluation time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from donjon.attestation.errors import (
    AttestationError,
    CertificateExpiredError,
    MalformedEvidenceError,
    NitroSignatureError,
    NitroTimestampError,
    VerifierInternalError,
)
from donjon.attestation.nitro.chain import NitroChain, load_bundle, p384_key, verify_nitro_chain
from donjon.attestation.nitro.document import NitroDocument, parse_document
from donjon.attestation.roots import AWS_NITRO_ROOT_SHA256
from donjon.attestation.verdict import Checklist, Stop

#: Clock skew tolerated between the enclave and the verifier.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class NitroVerified:
    document: NitroDocument
    chain: NitroChain


def verify_nitro(
    data: bytes,
    *,
    checks: Checklist,
    trusted_root: x509.Certificate | None,
    now: datetime,
) -> NitroVerified:
    """Run the fail-fast checks; raises :class:`Stop` after recording a failure."""
    document = parse_step(data, checks)
    return verify_document(document, checks=checks, trusted_root=trusted_root, now=now)


def parse_step(data: bytes, checks: Checklist) -> NitroDocument:
    return checks.step("nitro.document", lambda: _parse(data))


def verify_document(
    document: NitroDocument,
    *,
    checks: Checklist,
    trusted_root: x509.Certificate | None,
    now: datetime,
) -> NitroVerified:
    certs = checks.step("nitro.certificates", lambda: _certs(document))
    chain = _chain_step(checks, certs, trusted_root, now)
    checks.step("nitro.signature", lambda: _signature(document, chain))
    checks.step("nitro.timestamp", lambda: _timestamp(document, chain, now))
    return NitroVerified(document, chain)


def _parse(data: bytes) -> tuple[NitroDocument, str]:
    doc = parse_document(data)
    return doc, (f"module {doc.module_id}, {len(doc.pcrs)} PCRs, made {doc.timestamp.isoformat()}")


def _certs(document: NitroDocument) -> tuple[list[x509.Certificate], str]:
    certs = load_bundle(document.certificate, document.cabundle)
    return certs, f"leaf and {len(document.cabundle)} CA certificate(s) parse"


def _chain_step(
    checks: Checklist,
    certs: list[x509.Certificate],
    trusted_root: x509.Certificate | None,
    now: datetime,
) -> NitroChain:
    """``nitro.chain``, with an expired certificate recorded as ``nitro.validity``."""
    try:
        chain = verify_nitro_chain(
            certs, pinned_sha256=AWS_NITRO_ROOT_SHA256, trusted_root=trusted_root, now=now
        )
    except CertificateExpiredError as error:
        checks.fail("nitro.validity", error)
        raise Stop from error
    except AttestationError as error:
        checks.fail("nitro.chain", error)
        raise Stop from error
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        checks.fail("nitro.chain", MalformedEvidenceError(f"malformed certificate: {exc}"))
        raise Stop from exc
    except Exception as exc:  # fail closed, as in Checklist.step
        checks.fail("nitro.chain", VerifierInternalError(f"{type(exc).__name__}: {exc}"))
        raise Stop from exc
    checks.ok("nitro.chain", " -> ".join(chain.describe()) + f" (root from {chain.root_source})")
    checks.ok("nitro.validity", f"every certificate valid at {now.isoformat()}")
    return chain


def _signature(document: NitroDocument, chain: NitroChain) -> tuple[None, str]:
    document.sign1.verify(p384_key(chain.leaf), "Nitro document", NitroSignatureError)
    return None, f"{document.sign1.algorithm.name} by the leaf certificate"


def _timestamp(document: NitroDocument, chain: NitroChain, now: datetime) -> tuple[None, str]:
    made = document.timestamp
    leaf = chain.leaf
    if not leaf.not_valid_before_utc <= made <= leaf.not_valid_after_utc:
        raise NitroTimestampError(
            f"the document says it was made at {made.isoformat()}, outside its leaf "
            f"certificate's validity ({leaf.not_valid_before_utc.isoformat()} .. "
            f"{leaf.not_valid_after_utc.isoformat()})"
        )
    if made > now + CLOCK_SKEW:
        raise NitroTimestampError(
            f"the document was made at {made.isoformat()}, after the evaluation time "
            f"{now.isoformat()}"
        )
    return None, f"made {made.isoformat()}, inside the leaf's validity"
