"""The CSR evidence extension for Arm CCA (``oids.EVIDENCE_CCA``)::

    CcaEvidence ::= SEQUENCE {
        token  OCTET STRING }   -- the CCA attestation token (CBOR tag 399), as the
                                -- RMM returned it; its realm challenge is report_data
"""

from __future__ import annotations

from donjon.attestation.derwrap import unwrap, wrap


def encode_cca_evidence(token: bytes) -> bytes:
    return wrap(token)


def decode_cca_evidence(data: bytes) -> bytes:
    """The token inside the extension value, after a strict DER decode."""
    return unwrap(data, "CCA evidence")
