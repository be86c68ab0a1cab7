"""Typed failures of evidence verification, each with a stable ``code``.

A Steward logs and returns the code, tests assert on the type, and people read
the one-line message. Every kind of failure that an operator must tell apart
(a forged report, a revoked intermediate, a debug guest, an old TCB...) has
its own class, so that no caller ever has to parse a message.
"""

from __future__ import annotations

from donjon.errors import DonjonError


class AttestationError(DonjonError):
    """Evidence was refused. ``code`` is stable and machine-readable."""

    code = "attestation.failed"


class MalformedEvidenceError(AttestationError):
    """Truncated, extended or garbage evidence, or a structure that breaks the spec."""

    code = "evidence.malformed"


class ReservedFieldError(MalformedEvidenceError):
    """A must-be-zero (or must-be-one) field of the report has the wrong value."""

    code = "evidence.reserved"


class UnsupportedVersionError(MalformedEvidenceError):
    code = "evidence.version"


class SignatureError(AttestationError):
    """The report's signature does not verify with the endorsement key."""

    code = "snp.signature"


class WrongEndorsementKeyError(AttestationError):
    """The VCEK/VLEK belongs to another chip or another TCB than the report says."""

    code = "snp.vcek_mismatch"


class ProductMismatchError(AttestationError):
    """The report, the certificates and the operator disagree on the product line."""

    code = "snp.product"


class ChainError(AttestationError):
    """The endorsement key does not chain to a pinned vendor root."""

    code = "chain.untrusted"


class FingerprintMismatchError(ChainError):
    """A root certificate's SHA-256 fingerprint is not the pinned one."""

    code = "chain.fingerprint"


class CertificateExpiredError(ChainError):
    """A certificate of the chain is not valid at the evaluation time."""

    code = "cert.expired"


class CertificateRevokedError(ChainError):
    """A certificate of the chain is listed in its issuer's CRL."""

    code = "cert.revoked"


class CrlSignatureError(ChainError):
    """A CRL is not signed by the root it claims to come from."""

    code = "crl.signature"


class CrlStaleError(ChainError):
    """``crl = "require"``, and the root's only CRLs are past nextUpdate (or not yet valid).

    A stale CRL still revokes (revocation is permanent), but it cannot prove
    that nothing was revoked since, so under ``require`` the evidence is refused.
    """

    code = "crl.stale"


#: The name of :class:`CrlStaleError` before it had its own code (``crl.expired``).
CrlExpiredError = CrlStaleError


class CollateralMissingError(AttestationError):
    """A certificate or CRL needed for verification is not available."""

    code = "collateral.missing"


class CrlMissingError(CollateralMissingError):
    """``crl = "require"``, and no CRL of the root is available at all."""

    code = "crl.missing"


class ReportDataMismatchError(AttestationError):
    """``report_data`` does not bind the CSR's key (and workload claims)."""

    code = "binding.report_data"


class DebugNotAllowedError(AttestationError):
    """The guest policy allows debugging, and the verification policy does not."""

    code = "snp.debug"


class TcbBelowMinimumError(AttestationError):
    """A TCB component or firmware version is below the policy's minimum."""

    code = "tcb.below_minimum"


class TcbUnsupportedError(AttestationError):
    """The TCB cannot be appraised (e.g. unknown product layout, inconsistent versions)."""

    code = "tcb.unsupported"


class PolicyViolationError(AttestationError):
    """The evidence is genuine, but the policy does not accept what it shows."""

    code = "policy.violation"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class FreshnessError(AttestationError):
    """The evidence does not answer a challenge, where the policy demands one."""

    code = "freshness.nonce_missing"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class PlatformNotAllowedError(AttestationError):
    """Development evidence (nil, kvm, sim) without an explicit allowance in the policy."""

    code = "platform.not_allowed"


class UnsupportedPlatformError(AttestationError):
    """Recognised evidence whose verification this version does not implement yet."""

    code = "platform.unsupported"


class CsrError(AttestationError):
    """The CSR itself is malformed, badly signed, or carries the wrong extensions."""

    code = "csr.malformed"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class VerifierInternalError(AttestationError):
    """An unexpected failure inside the verifier: refused (fail closed), and worth a bug report."""

    code = "verifier.internal"


# --- Intel DCAP (SGX and TDX) ------------------------------------------------------------------


class QuoteSignatureError(SignatureError):
    """The quote's ECDSA signature does not verify with its attestation key."""

    code = "dcap.quote_signature"


class QeReportSignatureError(SignatureError):
    """The QE report is not signed by the PCK certificate's key."""

    code = "dcap.qe_report_signature"


class QeReportBindingError(AttestationError):
    """The QE report's report_data is not SHA-256(attestation key || QE auth data) || 0^32."""

    code = "dcap.qe_binding"


class UnsupportedCertificationDataError(MalformedEvidenceError):
    """A certification data type Donjon does not verify (PPID-only, platform manifest...)."""

    code = "dcap.cert_data_type"


class CollateralStaleError(AttestationError):
    """TCB Info or QE Identity is past its nextUpdate (or not yet issued) at evaluation time."""

    code = "collateral.stale"


class CollateralSignatureError(ChainError):
    """TCB Info or QE Identity is not signed by Intel's TCB Signing key under the pinned root."""

    code = "collateral.signature"


class CollateralMismatchError(AttestationError):
    """The collateral is for another TEE, FMSPC, PCE or quoting enclave than the quote."""

    code = "collateral.mismatch"


class TcbNotSupportedError(TcbUnsupportedError):
    """No TCB level of the TCB Info matches the platform (Intel: TCB not supported)."""

    code = "tcb.not_supported"


class TcbRevokedError(AttestationError):
    """Intel's TCB algorithm says Revoked: this platform's TCB may never be trusted."""

    code = "tcb.revoked"


class QeIdentityMismatchError(AttestationError):
    """The quoting enclave is not the one Intel's QE Identity describes."""

    code = "dcap.qe_identity"


class TdxModuleMismatchError(AttestationError):
    """The TDX module (MRSIGNERSEAM, SEAM attributes, version) is not one TCB Info describes."""

    code = "dcap.tdx_module"


class TdDebugError(DebugNotAllowedError):
    """The TD's DEBUG attribute is set, and the policy does not allow debug TDs."""

    code = "tdx.debug"


class EnclaveDebugError(DebugNotAllowedError):
    """The enclave's DEBUG attribute is set, and the policy does not allow debug enclaves."""

    code = "sgx.debug"


# --- Azure confidential VMs (HCL report + vTPM quote) --------------------------------------


class HclReportError(MalformedEvidenceError):
    """An Azure HCL report whose header, sizes or hardware-report area break its layout."""

    code = "azure.hcl_report"


class RuntimeClaimsError(MalformedEvidenceError):
    """The HCL report's runtime-claims JSON is malformed, or has fields Donjon does not know."""

    code = "azure.runtime_claims"


class RuntimeClaimsMismatchError(AttestationError):
    """The hardware report's report_data is not SHA-256 of the runtime claims it came with."""

    code = "azure.report_data"


class AttestationKeyError(AttestationError):
    """The runtime claims carry no usable vTPM attestation key (HCLAkPub, RSA)."""

    code = "azure.ak"


class TpmQuoteSignatureError(AttestationError):
    """The TPM quote's signature does not verify with the attestation key, or its algorithm is
    not RSASSA-PKCS1-v1_5 with SHA-256."""

    code = "azure.quote_signature"


class TpmQuoteFormatError(MalformedEvidenceError):
    """A TPMS_ATTEST that is not a quote: wrong magic or type, bad sizes, trailing bytes."""

    code = "azure.quote"


class PcrDigestMismatchError(AttestationError):
    """The PCR values sent with the quote do not hash to the digest the TPM signed."""

    code = "azure.pcr_digest"


class TdReportMismatchError(AttestationError):
    """The TD quote does not describe the TDREPORT that the HCL report holds."""

    code = "azure.td_report"


class PolicyError(DonjonError):
    """A verification policy file that cannot be loaded; names the file and key."""


# --- Arm CCA and AWS Nitro (cca/, nitro/) ---------------------------------------------------


class CcaPlatformSignatureError(SignatureError):
    """The CCA platform token's signature does not verify with the trusted CPAK."""

    code = "cca.platform_signature"


class CcaRealmSignatureError(SignatureError):
    """The CCA realm token's signature does not verify with the RAK it carries."""

    code = "cca.realm_signature"


class CcaTrustAnchorError(CollateralMissingError):
    """No trusted CPAK is known for the platform's implementation and instance IDs."""

    code = "cca.trust_anchor"


class CcaRakBindingError(AttestationError):
    """The platform challenge is not the hash of the realm's RAK: the tokens do not belong
    together."""

    code = "cca.rak_binding"


class CcaLifecycleError(AttestationError):
    """The CCA platform is not in the "secured" lifecycle state (and the policy does not
    allow the state it is in)."""

    code = "cca.lifecycle"


class NitroSignatureError(SignatureError):
    """The Nitro attestation document's signature does not verify with its leaf certificate."""

    code = "nitro.signature"


class NitroTimestampError(AttestationError):
    """The Nitro document's timestamp is outside its certificate's validity or in the future."""

    code = "nitro.timestamp"


class NitroDebugError(DebugNotAllowedError):
    """All-zero PCRs: a debug-mode enclave, whose memory the parent instance can read."""

    code = "nitro.debug"
