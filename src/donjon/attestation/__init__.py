"""Evidence formats, vendor roots, chains, CRLs, TCB appraisal and policy evaluation.

Public API (the Steward and the CLI use only these names)::

    load_policy(path) -> Policy
    Policy.from_toml(text, source=..., base_dir=...) -> Policy
    TrustStore(trust_dir, cache_dir=..., fetcher=...) / TrustStore.offline(trust_dir)
    verify_csr(csr_der, policy=..., trust=..., now=...) -> Verdict
    verify_report(report, policy=..., trust=..., now=..., vcek=...) -> Verdict

This package imports no other donjon subpackage except ``donjon.errors``; it does
no network I/O except through an optional :class:`KdsFetcher`.
"""

from donjon.attestation.csr import verify_csr, verify_report
from donjon.attestation.errors import (
    AttestationError,
    CertificateExpiredError,
    CertificateRevokedError,
    ChainError,
    CollateralMissingError,
    CrlExpiredError,
    CrlMissingError,
    CrlSignatureError,
    CrlStaleError,
    CsrError,
    DebugNotAllowedError,
    FingerprintMismatchError,
    MalformedEvidenceError,
    PlatformNotAllowedError,
    PolicyError,
    PolicyViolationError,
    ProductMismatchError,
    ReportDataMismatchError,
    ReservedFieldError,
    SignatureError,
    TcbBelowMinimumError,
    TcbUnsupportedError,
    UnsupportedPlatformError,
    UnsupportedVersionError,
    WrongEndorsementKeyError,
)
from donjon.attestation.kds import CollateralFetcher, KdsFetcher
from donjon.attestation.policy import Policy, SimPolicy, SnpPolicy, load_policy
from donjon.attestation.snp.product import Product
from donjon.attestation.trust import TrustStore
from donjon.attestation.verdict import Check, Verdict

__all__ = [
    "AttestationError",
    "CertificateExpiredError",
    "CertificateRevokedError",
    "ChainError",
    "Check",
    "CollateralFetcher",
    "CollateralMissingError",
    "CrlExpiredError",
    "CrlMissingError",
    "CrlSignatureError",
    "CrlStaleError",
    "CsrError",
    "DebugNotAllowedError",
    "FingerprintMismatchError",
    "KdsFetcher",
    "MalformedEvidenceError",
    "PlatformNotAllowedError",
    "Policy",
    "PolicyError",
    "PolicyViolationError",
    "Product",
    "ProductMismatchError",
    "ReportDataMismatchError",
    "ReservedFieldError",
    "SignatureError",
    "SimPolicy",
    "SnpPolicy",
    "TcbBelowMinimumError",
    "TcbUnsupportedError",
    "TrustStore",
    "UnsupportedPlatformError",
    "UnsupportedVersionError",
    "Verdict",
    "WrongEndorsementKeyError",
    "load_policy",
    "verify_csr",
    "verify_report",
]
