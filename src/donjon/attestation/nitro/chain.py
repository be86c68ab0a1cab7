"""Leaf -> cabundle -> AWS Nitro root: the certificate path of an attestation document.

``cabundle[0]`` must be the AWS Nitro Enclaves root, whose SHA-256 fingerprint
is pinned in code (``roots.py``); the root used is the one from the trust
directory when it holds it, else the identical bytes the document carries
(the pinned fingerprint is the trust, not where the bytes came from). Then each
certificate is issued by the one before it, down to the leaf, with:

* ECDSA P-384 with SHA-384 signatures and P-384 keys throughout;
* every issuer a CA allowed to sign certificates, within its path length;
* no unknown critical extension; the leaf not a CA;
* every certificate valid at the evaluation time.

AWS publishes no revocation status that Nitro verifiers check (the leaf lives
three hours); a verdict says so (``revocation-not-checked``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID

from donjon.attestation.errors import ChainError, FingerprintMismatchError
from donjon.attestation.snp.chain import fingerprint
from donjon.attestation.snp.profile import check_critical_extensions, check_issuer_profile
from donjon.attestation.x509util import check_validity, load_certificate, p384_public_key


@dataclass(frozen=True)
class NitroChain:
    root: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    leaf: x509.Certificate
    root_source: str
    valid_from: datetime
    valid_until: datetime

    def describe(self) -> list[str]:
        return [_cn(c) for c in (self.root, *self.intermediates, self.leaf)]


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def load_bundle(certificate: bytes, cabundle: tuple[bytes, ...]) -> list[x509.Certificate]:
    """The document's certificates, root first, leaf last (each one parsed fully)."""
    certs = [load_certificate(der, what=f"Nitro cabundle[{i}]") for i, der in enumerate(cabundle)]
    certs.append(load_certificate(certificate, what="Nitro leaf certificate"))
    return certs


def verify_nitro_chain(
    certs: list[x509.Certificate],
    *,
    pinned_sha256: str,
    trusted_root: x509.Certificate | None,
    now: datetime,
) -> NitroChain:
    """Check the path; ``trusted_root`` is the trust directory's AWS root, if it has one."""
    if len(certs) < 2:
        raise ChainError("the Nitro cabundle holds no root")
    bundled_root = certs[0]
    actual = fingerprint(bundled_root)
    if actual != pinned_sha256:
        raise FingerprintMismatchError(
            f"cabundle[0] {_cn(bundled_root)} has SHA-256 fingerprint {actual[:16]}..., "
            f"not the pinned AWS Nitro root {pinned_sha256[:16]}..."
        )
    if trusted_root is not None:
        root, source = trusted_root, "the trust directory"
    else:
        root, source = bundled_root, "the document (pinned fingerprint)"
    if root.issuer != root.subject:
        raise ChainError(f"the AWS root {_cn(root)} is not self-signed")
    _issued_by(root, root)
    check_issuer_profile(root, crl_sign=False)
    path = [root, *certs[1:]]
    for depth, cert in enumerate(path[1:], start=1):
        issuer = path[depth - 1]
        _issued_by(cert, issuer)
        if cert is path[-1]:
            _leaf_profile(cert)
        else:
            check_issuer_profile(cert, crl_sign=False)
    _path_lengths(path)
    for cert in path:
        check_validity(cert, now, _cn(cert))
    return NitroChain(
        root=root,
        intermediates=tuple(path[1:-1]),
        leaf=path[-1],
        root_source=source,
        valid_from=max(c.not_valid_before_utc for c in path),
        valid_until=min(c.not_valid_after_utc for c in path),
    )


def p384_key(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    return p384_public_key(cert, _cn(cert))


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    what = _cn(cert)
    if cert.issuer != issuer.subject:
        raise ChainError(f"{what}: issuer is not {_cn(issuer)}")
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA384:
        raise ChainError(f"{what}: signature algorithm is not ECDSA with SHA-384")
    p384_key(cert)
    try:
        p384_key(issuer).verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA384())
        )
    except InvalidSignature as exc:
        raise ChainError(f"{what}: signature by {_cn(issuer)} does not verify") from exc


def _leaf_profile(cert: x509.Certificate) -> None:
    check_critical_extensions(cert)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise ChainError(f"{_cn(cert)}: the document's signing certificate is a CA")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.digital_signature:
        raise ChainError(f"{_cn(cert)}: keyUsage does not allow digitalSignature")


def _path_lengths(path: list[x509.Certificate]) -> None:
    """No CA is followed by more intermediate CAs than its pathLenConstraint allows."""
    for index, cert in enumerate(path[:-1]):
        limit = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        following = len(path) - 2 - index  # CAs after this one, the leaf not counted
        if limit is not None and following > limit:
            raise ChainError(
                f"{_cn(cert)} allows {limit} CA(s) below it (pathLenConstraint), "
                f"the path has {following}"
            )
