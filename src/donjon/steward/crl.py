"""The Steward's certificate revocation list, signed by the CA and built from the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509

from donjon.steward.ca import CertificateAuthority
from donjon.steward.reasons import REVOCATION_REASONS

CRL_VALIDITY = timedelta(hours=24)

REASONS: dict[str, x509.ReasonFlags] = {
    name: x509.ReasonFlags[name.replace("-", "_")] for name in REVOCATION_REASONS
}


def build_crl(
    ca: CertificateAuthority,
    revoked: Sequence[tuple[str, datetime, str]],
    *,
    now: datetime,
    validity: timedelta = CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    """A CRL listing every revoked serial; its number is its issue time, so it only grows."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + validity)
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    for serial, at, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(at)
        flag = REASONS.get(reason)
        if flag is not None and flag is not x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca.key, ca.hash_algorithm)
