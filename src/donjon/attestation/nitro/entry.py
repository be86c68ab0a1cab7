"""The registry entry for AWS Nitro Enclaves: ``EVIDENCE_NITRO`` in a CSR, a bare document
file, or an RA-TLS certificate that carries a document in its subjectAltName.

Nitro is not a CPU TEE: the enclave's isolation is enforced by AWS's Nitro
hypervisor, which the evidence asks you to trust. Every result therefore carries
the advisory ``hypervisor-trusted``, which a relying party refuses unless it
allows it (``donjon verify-peer --allow-advisory hypervisor-trusted``).

Time: a Steward judges a document at its own clock. A bare document or
certificate is judged at the document's timestamp unless the operator gives a
time (``donjon attest verify --at``): the leaf certificate lives three hours.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography import x509

from donjon.attestation.claims import HYPERVISOR_TRUSTED, REVOCATION_NOT_CHECKED
from donjon.attestation.errors import MalformedEvidenceError, ReportDataMismatchError
from donjon.attestation.nitro.appraise import appraise_nitro, is_debug
from donjon.attestation.nitro.document import NitroDocument, looks_like_document, parse_document
from donjon.attestation.nitro.evidence import decode_nitro_evidence
from donjon.attestation.nitro.policy import NITRO_TCB_STATUSES, NitroPolicy
from donjon.attestation.nitro.ratls import document_in, load_ratls_certificate, sniff_ratls, spki_of
from donjon.attestation.nitro.verify import NitroVerified, parse_step, verify_document
from donjon.attestation.registry import VerifyContext, check_binding, section_of
from donjon.attestation.roots import AWS_NITRO_ROOT_SHA256
from donjon.attestation.verdict import Appraisal

#: ``VerifyOptions.material`` key: "document" evaluates a bare document at its own
#: timestamp (the CLI sets it when no --at is given); anything else uses the context's time.
MATERIAL_TIME = "nitro_time"
PRODUCT = "AWS Nitro Enclaves"


def show_document(document: bytes) -> dict[str, Any]:
    return {"document": parse_document(document).to_dict()}


class NitroEntry:
    platform = "nitro"

    def show(self, value: bytes) -> dict[str, Any]:
        return show_document(decode_nitro_evidence(value))

    def show_bare(self, data: bytes) -> dict[str, Any]:
        cert = load_ratls_certificate(data)
        if cert is None:
            return show_document(data)
        document = document_in(cert)
        if document is None:
            raise MalformedEvidenceError("the certificate carries no Nitro document")
        return {
            "certificate": {
                "subject": cert.subject.rfc4514_string(),
                "spki": spki_of(cert).hex(),
            },
            **show_document(document),
        }

    def verify(self, value: bytes, ctx: VerifyContext) -> Appraisal:
        policy: NitroPolicy = section_of(ctx, "nitro")
        data = ctx.checks.step(
            "evidence.format", lambda: (decode_nitro_evidence(value), "Donjon Nitro evidence")
        )
        document = parse_step(data, ctx.checks)
        verified = _verify(ctx, document, ctx.now)
        if document.user_data is None and ctx.subject is not None:
            ctx.checks.step("binding.report_data", _no_user_data)
        check_binding(ctx, document.user_data or b"", enarx=None)
        return _appraisal(ctx, verified, policy)

    def verify_bare(self, data: bytes, ctx: VerifyContext) -> Appraisal:
        policy: NitroPolicy = section_of(ctx, "nitro")
        cert = load_ratls_certificate(data)
        raw = data
        if cert is not None:
            raw = ctx.checks.step("nitro.certificate", lambda: _carried(cert))
        document = parse_step(raw, ctx.checks)
        now = ctx.now
        if ctx.options.material.get(MATERIAL_TIME) == "document":
            now = document.timestamp
            ctx.checks.ok(
                "nitro.time",
                f"evaluated at the document's timestamp {now.isoformat()} "
                "(give a time to evaluate at another)",
            )
        verified = _verify(ctx, document, now)
        if cert is not None:
            ctx.checks.step("binding.ratls", lambda: _ratls_binding(document, cert))
        else:
            check_binding(ctx, document.user_data or b"", enarx=None)
        return _appraisal(ctx, verified, policy)


def _verify(ctx: VerifyContext, document: NitroDocument, now: datetime) -> NitroVerified:
    root = ctx.trust.pinned_root(AWS_NITRO_ROOT_SHA256)
    return verify_document(document, checks=ctx.checks, trusted_root=root, now=now)


def _carried(cert: x509.Certificate) -> tuple[bytes, str]:
    found = document_in(cert)
    if found is None:
        raise MalformedEvidenceError(
            "the certificate's subjectAltName carries no Nitro attestation document"
        )
    return found, f"a {len(found)}-byte document in the subjectAltName"


def _no_user_data() -> tuple[None, str]:
    raise ReportDataMismatchError(
        "the Nitro document carries no user_data, so it binds no key (a Donjon Keep puts "
        "SHA-512(SPKI || claims) there)"
    )


def _ratls_binding(document: NitroDocument, cert: x509.Certificate) -> tuple[None, str]:
    if document.user_data != spki_of(cert):
        raise ReportDataMismatchError(
            "the document's user_data is not the certificate's public key: the document was "
            "made for another key"
        )
    return None, "user_data = the certificate's SubjectPublicKeyInfo (RA-TLS binding)"


def _appraisal(ctx: VerifyContext, verified: NitroVerified, policy: NitroPolicy) -> Appraisal:
    document = verified.document
    appraise_nitro(document, policy, ctx.checks)
    return Appraisal(
        platform="nitro",
        product=PRODUCT,
        measurement=document.pcrs.get(0, b""),
        tcb="",
        tcb_status="NotAppraised",
        debug=is_debug(document),
        section="nitro",
        rules=policy.rules,
        pinned=policy.pinned(),
        default_statuses=NITRO_TCB_STATUSES,
        notes=(HYPERVISOR_TRUSTED, REVOCATION_NOT_CHECKED),
        not_after_limit=verified.chain.valid_until,
        revocation_checked=False,
        describe=_describe(verified),
    )


def _describe(verified: NitroVerified) -> Callable[[], dict[str, Any]]:
    def describe() -> dict[str, Any]:
        return {
            "product": PRODUCT,
            "chain": verified.chain.describe(),
            **verified.document.to_dict(),
        }

    return describe


def sniff_document(data: bytes) -> bytes | None:
    """A raw Nitro attestation document (COSE_Sign1 whose payload names module_id)."""
    return data if looks_like_document(data) else None


__all__ = ["MATERIAL_TIME", "NitroEntry", "sniff_document", "sniff_ratls"]
