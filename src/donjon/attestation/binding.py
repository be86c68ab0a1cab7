"""How evidence binds the CSR's key (and the workload) into ``report_data``.

A TEE signs 64 bytes of caller data. Whoever holds the private key of the SPKI
hashed into them is the attested Keep; nothing else proves that.

* Enarx, SNP: ``SHA-384(SPKI DER)`` zero-padded to 64 bytes.
* Enarx, SGX: ``SHA-256(SPKI DER)`` zero-padded to 64 bytes.
* Donjon: ``SHA-512(SPKI DER || WorkloadClaims DER)``, all 64 bytes, so the
  evidence also proves which workload holds the key.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

REPORT_DATA_SIZE = 64


class Binding(Enum):
    ENARX_SHA384 = "enarx-sha384"
    ENARX_SHA256 = "enarx-sha256"
    DONJON_SHA512 = "donjon-sha512"


def enarx_snp_report_data(spki_der: bytes) -> bytes:
    return hashlib.sha384(spki_der).digest().ljust(REPORT_DATA_SIZE, b"\0")


def enarx_sgx_report_data(spki_der: bytes) -> bytes:
    return hashlib.sha256(spki_der).digest().ljust(REPORT_DATA_SIZE, b"\0")


def donjon_report_data(spki_der: bytes, claims_der: bytes) -> bytes:
    return hashlib.sha512(spki_der + claims_der).digest()


def expected_report_data(binding: Binding, spki_der: bytes, claims_der: bytes | None) -> bytes:
    if binding is Binding.DONJON_SHA512:
        if claims_der is None:
            raise ValueError("the Donjon binding needs the workload claims")
        return donjon_report_data(spki_der, claims_der)
    if binding is Binding.ENARX_SHA384:
        return enarx_snp_report_data(spki_der)
    return enarx_sgx_report_data(spki_der)


def matches(
    report_data: bytes, binding: Binding, spki_der: bytes, claims_der: bytes | None
) -> bool:
    """Constant-time comparison of the reported data with what the key and claims demand."""
    return hmac.compare_digest(report_data, expected_report_data(binding, spki_der, claims_der))


#: Domain separation of a Keep's secret-release request signature.
SECRET_RELEASE_CONTEXT = b"donjon secret release v1\0"


def secret_release_payload(nonce: bytes, name: str, certificate_der: bytes) -> bytes:
    """What a Keep signs to ask for secret ``name``: the Steward's nonce, the name, and
    SHA-256 of its own certificate, so the request cannot be replayed or moved to
    another connection's certificate (Python's ``ssl`` has no TLS exporter)."""
    return (
        SECRET_RELEASE_CONTEXT
        + nonce
        + b"\0"
        + name.encode()
        + b"\0"
        + hashlib.sha256(certificate_der).digest()
    )
