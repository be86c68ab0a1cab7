"""The CSR evidence extension for AWS Nitro Enclaves (``oids.EVIDENCE_NITRO``)::

    NitroEvidence ::= SEQUENCE {
        document  OCTET STRING }   -- the NSM attestation document (COSE_Sign1) as returned;
                                   -- its user_data is report_data (64 bytes)
"""

from __future__ import annotations

from donjon.attestation.derwrap import unwrap, wrap


def encode_nitro_evidence(document: bytes) -> bytes:
    return wrap(document)


def decode_nitro_evidence(data: bytes) -> bytes:
    return unwrap(data, "Nitro evidence")
