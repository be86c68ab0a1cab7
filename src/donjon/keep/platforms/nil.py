"""The ``nil`` platform: no TEE and no evidence, and it says so.

A Keep on ``nil`` still sends an evidence extension, ``EVIDENCE_NIL`` with a DER
NULL, so that a Steward sees an explicit "no TEE" rather than a missing field.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.keep.platforms.base import check_report_data

DER_NULL = b"\x05\x00"


class NilPlatform:
    name = "nil"

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1()

    def available(self) -> bool:
        return True

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        check_report_data(report_data)
        return x509.UnrecognizedExtension(oids.EVIDENCE_NIL, DER_NULL)


def create(state_dir: Path | None = None) -> NilPlatform:
    return NilPlatform()
