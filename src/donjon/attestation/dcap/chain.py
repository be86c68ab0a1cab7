"""Intel's certificate hierarchy: PCK -> Platform or Processor CA -> Intel SGX Root CA,
and TCB Signing -> Root; CRLs of the root and of each PCK CA.

The root is trusted by its SHA-256 fingerprint only (``roots.py``, or the
simulator's root that a policy names). Every certificate is ECDSA P-256 with
SHA-256; each link has its own error, so that an operator can tell a foreign
root from a broken intermediate or an expired PCK. Revocation is permanent:
a stale but genuine CRL still revokes, it only cannot prove that nothing was
revoked since (``require`` refuses it, ``if-available`` says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID

from donjon.attestation.errors import (
    CertificateRevokedError,
    ChainError,
    CrlMissingError,
    CrlSignatureError,
    CrlStaleError,
    FingerprintMismatchError,
)
from donjon.attestation.snp.chain import CrlMode, fingerprint, is_current, why_not_current
from donjon.attestation.snp.profile import check_critical_extensions
from donjon.attestation.x509util import check_validity, serial_of

ROOT_CN = "Intel SGX Root CA"
PCK_CA_CNS = {"Intel SGX PCK Platform CA": "platform", "Intel SGX PCK Processor CA": "processor"}
PCK_LEAF_PHRASE = "SGX PCK Certificate"
TCB_SIGNING_CN = "Intel SGX TCB Signing"


def common_name(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


@dataclass(frozen=True)
class RootPin:
    """The one root this verification trusts: Intel's, or (development) a simulator's."""

    sha256: str
    label: str  # "Intel SGX Root CA (pinned)" / "[sim] tdx_trust ..."


@dataclass(frozen=True)
class PckChain:
    """A verified PCK chain (signatures and profiles; validity and revocation are separate)."""

    root: x509.Certificate
    ca: x509.Certificate
    leaf: x509.Certificate
    #: "platform" or "processor": which PCK CRL covers the leaf.
    ca_kind: str
    #: PCK, CA and root, for people (computed once: the chain is memoised).
    summary: tuple[str, ...] = ()
    #: The PCK's public key, and when all three certificates are valid (computed once).
    key: ec.EllipticCurvePublicKey | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def check_validity(self, now: datetime) -> None:
        assert self.valid_from is not None and self.valid_until is not None
        if not self.valid_from <= now <= self.valid_until:
            check_validity_all((self.leaf, self.ca, self.root), now)  # raises, naming which

    def describe(self) -> list[str]:
        return list(self.summary)


def _ec_p256(cert: x509.Certificate, what: str) -> ec.EllipticCurvePublicKey:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ChainError(f"{what}: public key cannot be decoded ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ChainError(f"{what}: key is not ECDSA P-256")
    return key


def verify_signed_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """Name chaining and the ECDSA P-256/SHA-256 signature of ``cert`` by ``issuer``."""
    if cert.issuer != issuer.subject:
        raise ChainError(
            f"{what}: issued by {cert.issuer.rfc4514_string()}, "
            f"not by {issuer.subject.rfc4514_string()}"
        )
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise ChainError(f"{what}: signature algorithm is not ecdsa-with-SHA256")
    _ec_p256(issuer, f"issuer of {what}")
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise ChainError(
            f"{what}: signature by {common_name(issuer.subject)} does not verify"
        ) from exc


def _check_ca(cert: x509.Certificate, what: str) -> None:
    check_critical_extensions(cert)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ChainError(f"{what} has no basicConstraints: not a CA") from None
    if not constraints.ca:
        raise ChainError(f"{what} is not a CA (basicConstraints cA is false)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise ChainError(f"{what} has no keyUsage") from None
    if not usage.key_cert_sign:
        raise ChainError(f"{what} may not sign certificates (no keyCertSign)")


def check_root(root: x509.Certificate, pin: RootPin) -> None:
    """The root is the pinned one, self-signed, and a CA."""
    actual = fingerprint(root)
    if actual != pin.sha256:
        raise FingerprintMismatchError(
            f"root {common_name(root.subject)!r} has SHA-256 fingerprint {actual[:16]}..., "
            f"not the pinned {pin.label} {pin.sha256[:16]}...: a foreign root"
        )
    verify_signed_by(root, root, f"root {common_name(root.subject)}")
    _check_ca(root, f"root {common_name(root.subject)}")


def find_root(candidates: Iterable[x509.Certificate], pin: RootPin) -> x509.Certificate | None:
    for cert in candidates:
        if fingerprint(cert) == pin.sha256:
            return cert
    return None


def verify_pck_chain(
    certs: Sequence[x509.Certificate],
    *,
    pin: RootPin,
    extra_roots: Sequence[x509.Certificate] = (),
) -> PckChain:
    """Order the quote's certificates (any order), and check each link up to the pinned root."""
    leaves = [c for c in certs if PCK_LEAF_PHRASE in common_name(c.subject)]
    if len(leaves) != 1:
        raise ChainError(
            f"the quote's chain must hold exactly one PCK certificate, found {len(leaves)}"
        )
    leaf = leaves[0]
    cas = [c for c in certs if c.subject == leaf.issuer and c is not leaf]
    if not cas:
        raise ChainError(
            f"no issuer of the PCK certificate ({leaf.issuer.rfc4514_string()}) in the quote"
        )
    ca = cas[0]
    kind = PCK_CA_CNS.get(common_name(ca.subject))
    if kind is None:
        raise ChainError(
            f"the PCK certificate's issuer {common_name(ca.subject)!r} is neither the "
            "Intel SGX PCK Platform CA nor the Processor CA"
        )
    root = find_root([*certs, *extra_roots], pin)
    if root is None:
        named = [c for c in certs if c.subject == ca.issuer]
        if named:
            check_root(named[0], pin)  # raises: a root by that name, with another fingerprint
        raise ChainError(f"the pinned root ({pin.label}) is neither in the quote nor trusted")
    if len(certs) > 3 or any(c not in (leaf, ca, root) for c in certs):
        raise ChainError("the quote's chain holds certificates that are not PCK, CA and root")
    check_root(root, pin)
    verify_signed_by(ca, root, common_name(ca.subject))
    _check_ca(ca, common_name(ca.subject))
    verify_signed_by(leaf, ca, "PCK certificate")
    check_critical_extensions(leaf)
    _ec_p256(leaf, "PCK certificate")
    summary = (
        f"{common_name(leaf.subject)} serial 0x{serial_of(leaf):x}",
        common_name(ca.subject),
        f"{common_name(root.subject)} (sha256 {fingerprint(root)[:16]}...)",
    )
    certs3 = (leaf, ca, root)
    return PckChain(
        root=root,
        ca=ca,
        leaf=leaf,
        ca_kind=kind,
        summary=summary,
        key=_ec_p256(leaf, "PCK certificate"),
        valid_from=max(c.not_valid_before_utc for c in certs3),
        valid_until=min(c.not_valid_after_utc for c in certs3),
    )


def verify_signing_chain(
    certs: Sequence[x509.Certificate], *, pin: RootPin, extra_roots: Sequence[x509.Certificate] = ()
) -> tuple[x509.Certificate, x509.Certificate]:
    """A collateral issuer chain: (TCB Signing certificate, root)."""
    signers = [c for c in certs if common_name(c.subject) == TCB_SIGNING_CN]
    if len(signers) != 1:
        raise ChainError(
            f"the collateral's issuer chain must hold one {TCB_SIGNING_CN!r} certificate, "
            f"found {len(signers)}"
        )
    signer = signers[0]
    root = find_root([*certs, *extra_roots], pin)
    if root is None:
        named = [c for c in certs if c.subject == signer.issuer]
        if named:
            check_root(named[0], pin)
        raise ChainError(f"the collateral's issuer chain does not end at {pin.label}")
    check_root(root, pin)
    verify_signed_by(signer, root, TCB_SIGNING_CN)
    check_critical_extensions(signer)
    _ec_p256(signer, TCB_SIGNING_CN)
    return signer, root


def check_validity_all(certs: Iterable[x509.Certificate], now: datetime) -> None:
    for cert in certs:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            check_validity(cert, now, common_name(cert.subject))


# --- revocation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevocationResult:
    checked: bool  # every issuer had a current CRL
    note: str
    #: The latest instant the CRLs vouch for (min nextUpdate of the current ones).
    until: datetime | None
    #: The same answer holds while the evaluation time stays in [valid_from, valid_until):
    #: no CRL of these issuers starts or stops being current in between.
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def holds_at(self, now: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= now) and (
            self.valid_until is None or now < self.valid_until
        )


def crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    if crl.issuer != issuer.subject:
        return False
    try:
        return crl.is_signature_valid(_ec_p256(issuer, "CRL issuer"))
    except (ChainError, ValueError, TypeError, UnsupportedAlgorithm):
        return False


def check_revocation(
    subjects: Sequence[tuple[x509.Certificate, x509.Certificate]],
    crls: Sequence[tuple[x509.CertificateRevocationList, bool]],
    *,
    now: datetime,
    mode: CrlMode,
) -> RevocationResult:
    """For each (certificate, issuer): not revoked by any genuine CRL of the issuer, and
    (``require``) the issuer has a current CRL.

    ``crls`` pairs each CRL with whether it came with this quote (evidence, collateral file,
    fetched). Such a CRL in an issuer's name that its key did not sign is an attack, never
    a detail; one from a trust directory is merely someone else's (a test PKI's), skipped.
    """
    notes: list[str] = []
    until: datetime | None = None
    checked = True
    boundaries: list[datetime] = []
    for cert, issuer in subjects:
        name = common_name(issuer.subject)
        own = [(c, given) for c, given in crls if c.issuer == issuer.subject]
        current: x509.CertificateRevocationList | None = None
        stale: x509.CertificateRevocationList | None = None
        for crl, given in own:
            if not crl_signed_by(crl, issuer):
                if not given:
                    continue
                raise CrlSignatureError(f"a CRL issued in the name of {name} has a bad signature")
            if crl.get_revoked_certificate_by_serial_number(serial_of(cert)) is not None:
                raise CertificateRevokedError(
                    f"{common_name(cert.subject)} serial 0x{serial_of(cert):x} is revoked "
                    f"by the {name} CRL of {crl.last_update_utc.date()}"
                )
            boundaries.append(crl.last_update_utc)
            if crl.next_update_utc is not None:
                boundaries.append(crl.next_update_utc)
            if is_current(crl, now):
                if current is None or crl.last_update_utc > current.last_update_utc:
                    current = crl
            elif stale is None or crl.last_update_utc > stale.last_update_utc:
                stale = crl
        if current is not None:
            assert current.next_update_utc is not None
            until = (
                current.next_update_utc if until is None else min(until, current.next_update_utc)
            )
            note = f"{name} CRL of {current.last_update_utc.date()}"
            if note not in notes:
                notes.append(note)
            continue
        checked = False
        if stale is not None:
            why = why_not_current(stale, now)
            if mode == "require":
                raise CrlStaleError(f"no current CRL of {name} at {now.isoformat()}: {why}")
            notes.append(f"{name}: NOT CHECKED ({why})")
        else:
            if mode == "require":
                raise CrlMissingError(f"no CRL of {name} is available")
            notes.append(f"{name}: NOT CHECKED (no CRL)")
    prefix = "checked: " if checked else 'crl = "if-available": '
    before = [b for b in boundaries if b <= now]
    after = [b for b in boundaries if b > now]
    return RevocationResult(
        checked=checked,
        note=prefix + "; ".join(notes),
        until=until,
        valid_from=max(before) if before else None,
        valid_until=min(after) if after else None,
    )
