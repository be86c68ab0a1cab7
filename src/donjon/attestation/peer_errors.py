"""Why a relying party refuses a peer: one error type and ``code`` per reason.

Separate from the checks so that callers (the Keep, the CLI, scripts) can match a
refusal by type or by its stable ``code`` string.
"""

from __future__ import annotations

from donjon.errors import DonjonError


class PeerError(DonjonError):
    """The peer is not an attested Keep this relying party accepts."""

    code = "peer.refused"


class UntrustedChainError(PeerError):
    code = "peer.chain"


class PeerExpiredError(PeerError):
    code = "peer.expired"


class PeerRevokedError(PeerError):
    code = "peer.revoked"


class LeafProfileError(PeerError):
    """The peer certificate is not shaped like a Steward-issued Keep leaf."""

    code = "peer.profile"


class PeerIsCAError(LeafProfileError):
    """The peer certificate may sign certificates: never a Keep's."""

    code = "peer.is_ca"


class WrongPurposeError(PeerError):
    """The peer certificate's extendedKeyUsage does not allow the TLS role it is used in."""

    code = "peer.purpose"


class CrlError(PeerError):
    """The CRL is unreadable (the specific failures below are subclasses)."""

    code = "peer.crl"


class CrlSignatureError(CrlError):
    """The CRL was not issued and signed by the Steward CA."""

    code = "peer.crl_signature"


class CrlStaleError(CrlError):
    """The CRL is past its nextUpdate, or has none and so can never prove it is current."""

    code = "peer.crl_stale"


class CrlNotYetValidError(CrlError):
    code = "peer.crl_not_yet_valid"


class CrlScopeError(CrlError):
    """A delta, partitioned or otherwise not understood CRL: not the complete list."""

    code = "peer.crl_scope"


class MissingAttestationError(PeerError):
    code = "peer.no_attestation"


class DevelopmentPeerError(PeerError):
    """The peer runs outside a TEE (nil/sim/kvm); refused unless asked for."""

    code = "peer.development"


class DebugPeerError(PeerError):
    code = "peer.debug"


class PlatformNotAllowedError(PeerError):
    code = "peer.platform"


class WorkloadMismatchError(PeerError):
    code = "peer.workload"


class PackageMismatchError(PeerError):
    """The peer was not deployed from the expected package (OCI manifest digest)."""

    code = "peer.package"


class PackageRepositoryMismatchError(PeerError):
    """The peer's claims name another registry repository than the one expected."""

    code = "peer.package_repository"


class PackageSignatureError(PeerError):
    """No signature in the peer's claims verifies with a key the caller named."""

    code = "peer.package_signature"


class MeasurementMismatchError(PeerError):
    """The TEE measured something other than the launch image the caller expects."""

    code = "peer.measurement"


class ClaimsBindingError(PeerError):
    """The certificate's workload claims and its attestation result disagree."""

    code = "peer.claims_binding"


class TcbTooLowError(PeerError):
    code = "peer.tcb"


class TcbStatusNotAllowedError(PeerError):
    """The Steward's tcbStatus is not one the caller accepts (e.g. OutOfDate, NotAppraised)."""

    code = "peer.tcb_status"


class AdvisoryNotAllowedError(PeerError):
    """The certificate carries an advisory (e.g. revocation-not-checked) not allowed."""

    code = "peer.advisory"
