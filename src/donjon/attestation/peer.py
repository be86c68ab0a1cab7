"""Relying-party checks: is this peer certificate an attested Keep that I accept?

Pure functions, no network: given the peer's leaf certificate, the Steward CA,
an optional CRL and the caller's expectations, verify the chain and read the
AttestationResult extension the Steward wrote. Each way to fail has its own
error type and ``code``, so a client can tell an expired certificate from a
revoked one, a debug TEE or the wrong workload.

The X.509 checks are in :mod:`donjon.attestation.peer_x509` and the error
types in :mod:`donjon.attestation.peer_errors`; both are re-exported here.

The checks fail closed: a leaf with an unknown critical extension, a CA leaf,
a CRL that cannot prove it is current, an advisory or TCB status the caller did
not accept are each refused. What was *not* checked (no CRL given) is recorded
as a skipped check, never silently passed over.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509

from donjon.attestation import oids, packagesig
from donjon.attestation.claims import (
    REVOCATION_NOT_CHECKED,
    AttestationResult,
    ClaimsError,
    WorkloadClaims,
)
from donjon.attestation.peer_errors import (
    AdvisoryNotAllowedError,
    ClaimsBindingError,
    CrlError,
    CrlNotYetValidError,
    CrlScopeError,
    CrlSignatureError,
    CrlStaleError,
    DebugPeerError,
    DevelopmentPeerError,
    LeafProfileError,
    MeasurementMismatchError,
    MissingAttestationError,
    PackageMismatchError,
    PackageRepositoryMismatchError,
    PackageSignatureError,
    PeerError,
    PeerExpiredError,
    PeerIsCAError,
    PeerRevokedError,
    PlatformNotAllowedError,
    TcbStatusNotAllowedError,
    TcbTooLowError,
    UntrustedChainError,
    WorkloadMismatchError,
    WrongPurposeError,
)
from donjon.attestation.peer_x509 import (
    PeerRole,
    check_chain,
    check_crl,
    check_leaf_profile,
    load_certificate,
    load_crl,
    touch_peer,
)
from donjon.errors import UsageError, plain

__all__ = [
    "DEFAULT_TCB_STATUSES",
    "DEVELOPMENT_ADVISORIES",
    "DEVELOPMENT_PLATFORMS",
    "KNOWN_TCB_STATUSES",
    "NOT_APPRAISED",
    "AdvisoryNotAllowedError",
    "ClaimsBindingError",
    "CrlError",
    "CrlNotYetValidError",
    "CrlScopeError",
    "CrlSignatureError",
    "CrlStaleError",
    "DebugPeerError",
    "DevelopmentPeerError",
    "LeafProfileError",
    "MeasurementMismatchError",
    "MissingAttestationError",
    "PackageMismatchError",
    "PackageRepositoryMismatchError",
    "PackageSignatureError",
    "PeerCheck",
    "PeerError",
    "PeerExpectations",
    "PeerExpiredError",
    "PeerIdentity",
    "PeerIsCAError",
    "PeerRevokedError",
    "PeerRole",
    "PlatformNotAllowedError",
    "TcbStatusNotAllowedError",
    "TcbTooLowError",
    "UntrustedChainError",
    "WorkloadMismatchError",
    "WrongPurposeError",
    "check_crl",
    "check_leaf_profile",
    "client_context",
    "load_certificate",
    "load_crl",
    "parse_tcb",
    "read_attestation",
    "verify_peer_certificate",
]

DEVELOPMENT_PLATFORMS = frozenset({"nil", "sim", "kvm"})

#: TCB statuses accepted from a TEE peer by default: the TCB was appraised and found current.
#: ``MeetsMinimum``/``NotAppraised`` are Donjon's SNP statuses (AMD publishes none), the others
#: Intel's (TDX/SGX).
DEFAULT_TCB_STATUSES = frozenset({"UpToDate", "MeetsMinimum"})
#: The Steward compared the TCB to no minimum; accepted from a TEE peer by default only when
#: the caller gives its own ``min_tcb`` (then the TCB is appraised here).
NOT_APPRAISED = "NotAppraised"
#: Statuses that ``--allow-tcb-status`` knows (a typo there would only refuse more, but say so).
KNOWN_TCB_STATUSES = frozenset(
    {
        *DEFAULT_TCB_STATUSES,
        NOT_APPRAISED,
        "NoTEE",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "TDRelaunchAdvised",
        "TDRelaunchAdvisedConfigurationNeeded",
        "Revoked",
        "Unknown",
    }
)
#: Advisories a development peer accepted under ``allow_development`` may carry by default:
#: a simulated vendor publishes no CRL and nil/kvm have no vendor, so nothing can be revoked.
DEVELOPMENT_ADVISORIES = frozenset({REVOCATION_NOT_CHECKED})


@dataclass(frozen=True)
class PeerExpectations:
    """What the caller demands. The defaults refuse development and debug peers, every
    advisory on a TEE peer, and a TEE peer's TCB statuses other than UpToDate/MeetsMinimum.

    ``allowed_advisories``/``tcb_statuses`` left at None mean those defaults (see
    :meth:`accepted_advisories` and :meth:`accepted_tcb_statuses`); a set given replaces
    them for every peer, so ``allowed_advisories=frozenset()`` refuses any advisory at all.
    """

    workload_sha256: bytes | None = None
    #: SHA-256 of the OCI manifest (or https tar) the peer must have been deployed from.
    package_sha256: bytes | None = None
    #: The registry repository (``host[:port]/path``, or ``.../*``) the peer's package came from.
    package_repository: str | None = None
    #: Signer keys: the peer's claims must carry a signature by one of them over its
    #: repository and package digest (as the Steward's ``allowed_packages`` entries judge).
    package_signers: tuple[packagesig.PublicKey, ...] = ()
    #: The TEE's launch measurement (SNP MEASUREMENT, TDX MRTD, SGX MRENCLAVE), exactly.
    measurement: bytes | None = None
    min_tcb: Mapping[str, int] = field(default_factory=dict)
    platforms: frozenset[str] | None = None  # None: any TEE platform
    allow_development: bool = False
    allow_debug: bool = False
    allowed_advisories: frozenset[str] | None = None
    tcb_statuses: frozenset[str] | None = None

    def accepted_advisories(self, development: bool) -> frozenset[str]:
        """None for a TEE peer; for an allowed development peer, revocation-not-checked,
        which the Steward always writes for it (there is no vendor CRL to check)."""
        if self.allowed_advisories is not None:
            return self.allowed_advisories
        return DEVELOPMENT_ADVISORIES if development else frozenset()

    def accepted_tcb_statuses(self, development: bool) -> frozenset[str] | None:
        """UpToDate/MeetsMinimum, and NotAppraised when ``min_tcb`` is appraised here.

        None (any status) for an allowed development peer: nil/kvm have no TCB and a
        simulated one means nothing, so its status cannot make it more or less trusted.
        """
        if self.tcb_statuses is not None:
            return self.tcb_statuses
        if development:
            return None
        if self.min_tcb:
            return DEFAULT_TCB_STATUSES | {NOT_APPRAISED}
        return DEFAULT_TCB_STATUSES


@dataclass(frozen=True)
class PeerCheck:
    id: str
    passed: bool
    reason: str
    #: Not performed (``passed`` is then True: nothing failed); shown, never hidden.
    skipped: bool = False


@dataclass(frozen=True)
class PeerIdentity:
    """What an accepted peer proved."""

    certificate: x509.Certificate
    result: AttestationResult
    workload: WorkloadClaims | None
    checks: tuple[PeerCheck, ...]

    @property
    def serial_hex(self) -> str:
        return format(self.certificate.serial_number, "x")

    @property
    def revocation_checked(self) -> bool:
        """False when no CRL was given: the peer may have been revoked since."""
        return any(c.id == "revocation" and not c.skipped for c in self.checks)


def parse_tcb(text: str) -> dict[str, int]:
    """``"bl=3 tee=0 snp=8 ucode=115"`` (spaces or commas) -> components."""
    out: dict[str, int] = {}
    for part in text.replace(",", " ").split():
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise UsageError(f"TCB component {part!r} is not NAME=NUMBER (e.g. snp=8)")
        try:
            out[name.strip().lower()] = int(value, 0)
        except ValueError:
            raise UsageError(f"TCB component {part!r} has a non-numeric value") from None
    return out


def client_context(
    ca_pem: bytes, *, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A TLS 1.3 client context trusting only the Steward CA.

    Host names are not checked: a Keep's identity is its attested claims, which
    :func:`verify_peer_certificate` checks after the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"the Steward CA is not a PEM certificate: {plain(exc)}") from None
    if certfile is not None:
        context.load_cert_chain(certfile, keyfile)
    return context


def _extension_bytes(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def read_attestation(cert: x509.Certificate) -> tuple[AttestationResult, WorkloadClaims | None]:
    """The Steward's AttestationResult and the copied WorkloadClaims, strictly decoded."""
    der = _extension_bytes(cert, oids.ATTESTATION_RESULT)
    if der is None:
        raise MissingAttestationError(
            "peer certificate carries no attestation result: not issued by a Donjon Steward"
        )
    try:
        result = AttestationResult.from_der(der)
    except ClaimsError as exc:
        raise MissingAttestationError(
            f"peer attestation result is unreadable: {plain(exc)}"
        ) from None
    claims_der = _extension_bytes(cert, oids.WORKLOAD_CLAIMS)
    workload = result.workload
    if claims_der is not None:
        try:
            copied = WorkloadClaims.from_der(claims_der)
        except ClaimsError as exc:
            raise ClaimsBindingError(f"peer workload claims are unreadable: {plain(exc)}") from None
        if workload is not None and copied != workload:
            raise ClaimsBindingError("peer workload claims differ from its attestation result")
        workload = copied
    return result, workload


def verify_peer_certificate(
    leaf: x509.Certificate,
    ca: x509.Certificate,
    *,
    now: datetime,
    crl: x509.CertificateRevocationList | None = None,
    expect: PeerExpectations | None = None,
    role: PeerRole = "server",
) -> PeerIdentity:
    """Accept ``leaf`` as an attested Keep, or raise the PeerError that says why not.

    ``role`` is what the peer is to the caller: the TLS ``"server"`` it connected to
    (its certificate needs serverAuth), or a ``"client"`` that connected to it (clientAuth).
    """
    expect = expect or PeerExpectations()
    checks: list[PeerCheck] = []
    touch_peer(leaf)
    check_chain(leaf, ca, now)
    checks.append(PeerCheck("chain", True, "signed by the Steward CA, in its validity period"))
    purpose = check_leaf_profile(leaf, role)
    checks.append(PeerCheck("profile", True, f"end-entity certificate for TLS ({purpose})"))
    if crl is not None:
        check_crl(leaf, ca, crl, now)
        checks.append(PeerCheck("revocation", True, "not in the Steward's current CRL"))
    else:
        checks.append(PeerCheck("revocation", True, "not checked (no CRL given)", skipped=True))
    result, workload = read_attestation(leaf)
    checks.append(PeerCheck("attestation", True, f"platform {result.platform}"))
    development = result.development or result.platform in DEVELOPMENT_PLATFORMS
    if development:
        if not expect.allow_development:
            raise DevelopmentPeerError(
                f"peer is not in a TEE (platform {result.platform}, development certificate)"
            )
        checks.append(PeerCheck("development", True, "development peer allowed by the caller"))
    if expect.platforms is not None and result.platform not in expect.platforms:
        raise PlatformNotAllowedError(
            f"peer platform {result.platform} is not one of {', '.join(sorted(expect.platforms))}"
        )
    if result.debug and not expect.allow_debug:
        raise DebugPeerError("peer TEE allows debugging: its memory is not confidential")
    checks.append(PeerCheck("debug", True, "debug " + ("allowed" if result.debug else "off")))
    checks.append(_check_advisories(result, expect, development))
    checks.append(_check_tcb_status(result, expect, development))
    if expect.workload_sha256 is not None:
        if workload is None:
            raise WorkloadMismatchError("peer certificate names no workload")
        if not hmac.compare_digest(workload.wasm_sha256, expect.workload_sha256):
            raise WorkloadMismatchError(
                f"peer runs workload {workload.wasm_sha256.hex()}, "
                f"expected {expect.workload_sha256.hex()}"
            )
        checks.append(PeerCheck("workload", True, f"wasm sha256 {workload.wasm_sha256.hex()}"))
    if expect.package_sha256 is not None:
        package = workload.package_sha256 if workload is not None else None
        if package is None:
            raise PackageMismatchError("peer certificate names no package (not from a registry)")
        if not hmac.compare_digest(package, expect.package_sha256):
            raise PackageMismatchError(
                f"peer was deployed from package sha256:{package.hex()}, "
                f"expected sha256:{expect.package_sha256.hex()}"
            )
        checks.append(PeerCheck("package", True, f"package sha256:{package.hex()}"))
    if expect.package_repository is not None or expect.package_signers:
        checks.append(_check_package_signature(workload, expect))
    if expect.measurement is not None:
        if not hmac.compare_digest(result.measurement, expect.measurement):
            raise MeasurementMismatchError(
                f"peer measurement {result.measurement.hex() or '(none)'}, "
                f"expected {expect.measurement.hex()}"
            )
        checks.append(PeerCheck("measurement", True, result.measurement.hex()))
    if expect.min_tcb:
        actual = parse_tcb(result.tcb) if result.tcb else {}
        short = [
            f"{name}={actual.get(name, 'missing')} < {minimum}"
            for name, minimum in sorted(expect.min_tcb.items())
            if actual.get(name, -1) < minimum
        ]
        if short:
            raise TcbTooLowError(f"peer TCB below the minimum: {', '.join(short)}")
        checks.append(PeerCheck("tcb", True, f"TCB {result.tcb} meets the minimum"))
    return PeerIdentity(certificate=leaf, result=result, workload=workload, checks=tuple(checks))


def _check_package_signature(
    workload: WorkloadClaims | None, expect: PeerExpectations
) -> PeerCheck:
    """The claimed repository (exact, or below a ``/*`` prefix) and a signature by a given key."""
    repository = workload.package_repository if workload is not None else None
    package = workload.package_sha256 if workload is not None else None
    if workload is None or repository is None or package is None:
        raise PackageRepositoryMismatchError(
            "peer certificate names no package repository (not deployed from a registry)"
        )
    wanted = expect.package_repository
    if wanted is not None and not packagesig.repository_matches(wanted, repository):
        raise PackageRepositoryMismatchError(
            f"peer was deployed from repository {repository}, expected {wanted}"
        )
    if not expect.package_signers:
        return PeerCheck("package_repository", True, f"repository {repository}")
    verdict = packagesig.judge(
        workload.package_signatures,
        repository,
        package,
        {packagesig.key_id(k): k for k in expect.package_signers},
        whose="a signer key given",
    )
    if not verdict.ok:
        raise PackageSignatureError(f"peer package sha256:{package.hex()}: {verdict.message}")
    return PeerCheck("package_signature", True, verdict.message)


def _check_advisories(
    result: AttestationResult, expect: PeerExpectations, development: bool
) -> PeerCheck:
    accepted = expect.accepted_advisories(development)
    refused = [a for a in result.advisories if a not in accepted]
    if refused:
        raise AdvisoryNotAllowedError(
            f"peer certificate carries advisory {', '.join(refused)}, not accepted "
            f"(allowed: {', '.join(sorted(accepted)) or 'none'})",
            hint="accept it explicitly if you know why the Steward wrote it "
            "(donjon verify-peer --allow-advisory NAME)",
        )
    if not result.advisories:
        return PeerCheck("advisories", True, "none")
    why = "allowed by the caller" if expect.allowed_advisories is not None else "development peer"
    return PeerCheck("advisories", True, f"{', '.join(result.advisories)} accepted ({why})")


def _check_tcb_status(
    result: AttestationResult, expect: PeerExpectations, development: bool
) -> PeerCheck:
    accepted = expect.accepted_tcb_statuses(development)
    status = result.tcb_status
    if accepted is None:
        return PeerCheck("tcb_status", True, f"{status} (development peer: no TCB to appraise)")
    if status not in accepted:
        hint = (
            ": the Steward's policy sets no minimum TCB; set one there, or give one here"
            if status == NOT_APPRAISED
            else ""
        )
        raise TcbStatusNotAllowedError(
            f"peer TCB status {status or '(empty)'} is not accepted "
            f"(accepted: {', '.join(sorted(accepted)) or 'none'}){hint}"
        )
    if status == NOT_APPRAISED and expect.min_tcb:
        return PeerCheck("tcb_status", True, f"{status} by the Steward; appraised here")
    return PeerCheck("tcb_status", True, status)
