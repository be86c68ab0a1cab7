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
    entries = []
    for serial, at, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(at)
        flag = REASONS.get(reason)
        if flag is not None and flag is not x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        entries.append(entry.build())
    # One builder with every entry: add_revoked_certificate() copies the list each time,
    # which made a CRL of 10^5 serials take most of a minute.
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=ca.certificate.subject,
        last_update=now,
        next_update=now + validity,
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(int(now.timestamp() * 1000))),
            x509.Extension(
                x509.AuthorityKeyIdentifier.oid,
                False,
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            ),
        ],
        revoked_certificates=entries,
    )
    return builder.sign(ca.key, ca.hash_algorithm)
