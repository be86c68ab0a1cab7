"""Verify SEV-SNP evidence: report, endorsement key, AMD chain, revocation, signature.

The same code path serves real AMD evidence and the simulated TEE: only the
root differs (a pinned AMD ARK, or the ARK named by the policy's ``[sim]
trust``). Each step records a check; the first failure stops the pipeline
with its own error type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation.errors import (
    AttestationError,
    CertificateExpiredError,
    CertificateRevokedError,
    CollateralMissingError,
    CrlMissingError,
    CrlSignatureError,
    CrlStaleError,
    MalformedEvidenceError,
    ProductMismatchError,
    SignatureError,
    TcbUnsupportedError,
    VerifierInternalError,
    WrongEndorsementKeyError,
)
from donjon.attestation.kds import AMD_KDS_URL
from donjon.attestation.roots import AMD_ARK_SHA256
from donjon.attestation.snp import layout
from donjon.attestation.snp.chain import (
    ChainResult,
    CrlMode,
    verify_chain,
)
from donjon.attestation.snp.product import Product
from donjon.attestation.snp.report import SigningKey, SnpReport, parse_report
from donjon.attestation.snp.vcek import EndorsementKeyInfo
from donjon.attestation.trust import TrustStore
from donjon.attestation.verdict import Checklist, Stop
from donjon.attestation.x509util import p384_public_key
from donjon.errors import plain

_P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)


@dataclass(frozen=True)
class SnpEvidence:
    """What arrived with the report: its endorsement key, extra certificates and CRLs."""

    report: bytes
    endorsement: x509.Certificate | None = None
    intermediates: tuple[x509.Certificate, ...] = ()
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    ark: x509.Certificate | None = None  # sim evidence carries its own root


@dataclass(frozen=True)
class SimRoot:
    """The simulator's root, as named by the policy: trusted by fingerprint only."""

    sha256: str


@dataclass(frozen=True)
class SnpVerified:
    report: SnpReport
    product: Product
    key: EndorsementKeyInfo
    chain: ChainResult


def verify_snp(
    evidence: SnpEvidence,
    *,
    trust: TrustStore,
    now: datetime,
    checks: Checklist,
    product_hint: Product | None = None,
    crl_mode: CrlMode = "require",
    sim_root: SimRoot | None = None,
) -> SnpVerified:
    """Run the fail-fast SNP checks; raises :class:`Stop` after recording a failure."""
    report = checks.step("snp.report", lambda: _parse(evidence.report))
    cpuid_product = checks.step("snp.cpuid", lambda: _cpuid_product(report, product_hint))
    leaf = checks.step(
        "snp.endorsement_key", lambda: _endorsement(evidence, report, cpuid_product, trust)
    )
    key = checks.step("snp.endorsement_key_info", lambda: _key_info(trust, leaf))
    product = checks.step("snp.product", lambda: _product(cpuid_product, key))
    checks.step("snp.signing_key", lambda: _signing_key(report, key))
    chain = _chain_step(checks, evidence, leaf, key, product, trust, now, crl_mode, sim_root)
    checks.step("snp.vcek_match", lambda: _vcek_match(report, key, product))
    checks.step("snp.signature", lambda: _signature(report, leaf))
    checks.step("snp.firmware_abi", lambda: _abi_consistency(report))
    return SnpVerified(report=report, product=product, key=key, chain=chain)


def _parse(data: bytes) -> tuple[SnpReport, str]:
    report = parse_report(data)
    return report, f"version {report.version}, {len(data)} bytes, reserved fields zero"


def _cpuid_product(report: SnpReport, hint: Product | None) -> tuple[Product | None, str]:
    from_cpuid = report.product
    if from_cpuid is not None and hint is not None and from_cpuid is not hint:
        raise ProductMismatchError(
            f"report CPUID says {from_cpuid.value}, but {hint.value} was requested"
        )
    product = from_cpuid or hint
    if from_cpuid is not None:
        fam, mod, step = report.cpuid or (0, 0, 0)
        return (
            product,
            f"CPUID family 0x{fam:x} model 0x{mod:x} stepping {step}: {from_cpuid.value}",
        )
    return product, "v2 report has no CPUID; product from the certificates" + (
        f" or the operator ({hint.value})" if hint else ""
    )


def _endorsement(
    evidence: SnpEvidence, report: SnpReport, product: Product | None, trust: TrustStore
) -> tuple[x509.Certificate, str]:
    if evidence.endorsement is not None:
        return evidence.endorsement, "supplied with the evidence"
    if report.signing_key is not SigningKey.VCEK:
        raise CollateralMissingError(
            f"the report is signed by a {report.signing_key.name} key, and none was supplied"
        )
    if product is None:
        raise CollateralMissingError(
            "no VCEK supplied, and the product line is unknown (v2 report): name it to fetch one"
        )
    cert = trust.endorsement_key(product, report.chip_id, report.reported_tcb)
    if cert is None:
        raise CollateralMissingError(
            "no VCEK supplied or cached for this chip and TCB, and no KDS fetcher is configured"
        )
    return cert, "VCEK from the cache or AMD KDS"


def _key_info(trust: TrustStore, leaf: x509.Certificate) -> tuple[EndorsementKeyInfo, str]:
    info = trust.key_info(leaf)
    extra = f", cspID {info.csp_id}" if info.csp_id else ""
    return info, f"{info.kind} for {info.product_name}, TCB {_tcb_text(info.tcb)}{extra}"


def _product(from_report: Product | None, key: EndorsementKeyInfo) -> tuple[Product, str]:
    sources = {
        "report/operator": from_report,
        "certificate productName": key.product,
        "certificate issuer": key.issuer_product,
    }
    known = {name: p for name, p in sources.items() if p is not None}
    if not known:
        raise ProductMismatchError("cannot tell the AMD product line from the report or its key")
    distinct = set(known.values())
    if len(distinct) > 1:
        detail = ", ".join(f"{name}: {p.value}" for name, p in known.items())
        raise ProductMismatchError(f"product lines disagree ({detail})")
    product = distinct.pop()
    return product, f"{product.value} (" + ", ".join(known) + " agree)"


def _signing_key(report: SnpReport, key: EndorsementKeyInfo) -> tuple[None, str]:
    if report.signing_key is SigningKey.NONE:
        raise SignatureError("the report says it is not signed (signing_key = none)")
    if report.signing_key.name != key.kind:
        raise WrongEndorsementKeyError(
            f"report is signed by a {report.signing_key.name}, but a {key.kind} was supplied"
        )
    return None, f"report signed by {key.kind}"


_CHAIN_CHECK_IDS: tuple[tuple[type[AttestationError], str], ...] = (
    (CrlSignatureError, "snp.crl"),
    (CrlStaleError, "snp.crl"),
    (CrlMissingError, "snp.crl"),
    (CertificateRevokedError, "snp.revocation"),
    (CertificateExpiredError, "snp.validity"),
)


def _chain_step(
    checks: Checklist,
    evidence: SnpEvidence,
    leaf: x509.Certificate,
    key: EndorsementKeyInfo,
    product: Product,
    trust: TrustStore,
    now: datetime,
    crl_mode: CrlMode,
    sim_root: SimRoot | None,
) -> ChainResult:
    try:
        chain = _chain(evidence, leaf, key, product, trust, now, crl_mode, sim_root)
    except AttestationError as error:
        if isinstance(error, (CrlStaleError, CrlMissingError)) and error.hint is None:
            error.hint = _crl_hint(product, key.kind, sim=sim_root is not None)
            fetch_error = trust.crl_fetch_error(product, key.kind)
            if fetch_error is not None and sim_root is None:
                error.hint = f"{fetch_error}; {error.hint}"
            if trust.skipped and sim_root is None:
                names = ", ".join(str(path) for path in trust.skipped[:3])
                error.hint = f"unreadable files were skipped: {names}; {error.hint}"
        check_id = next((cid for t, cid in _CHAIN_CHECK_IDS if isinstance(error, t)), "snp.chain")
        checks.fail(check_id, error)
        raise Stop from error
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        checks.fail("snp.chain", MalformedEvidenceError(f"malformed certificate: {plain(exc)}"))
        raise Stop from exc
    except Exception as exc:  # fail closed, as in Checklist.step
        checks.fail("snp.chain", VerifierInternalError(f"{type(exc).__name__}: {exc}"))
        raise Stop from exc
    checks.ok("snp.chain", " -> ".join(chain.describe()))
    checks.ok("snp.validity", f"every certificate valid at {now.isoformat()}")
    fetched = chain.crl_checked or sim_root is not None  # sim: nothing is ever fetched
    fetch_error = None if fetched else trust.crl_fetch_error(product, key.kind)
    note = chain.crl_note if fetch_error is None else f"{chain.crl_note} ({fetch_error})"
    if chain.crl_checked:
        checks.ok("snp.revocation", note)
    else:
        checks.not_checked("snp.revocation", note)
    return chain


def _crl_hint(product: Product, kind: str, *, sim: bool) -> str:
    """What an operator can do about a missing or stale ARK CRL."""
    if sim:
        return "the simulator publishes no CRL: verify sim evidence with crl = if-available"
    url = f"{AMD_KDS_URL}/{kind.lower()}/v1/{product.value}/crl"
    return (
        f"fetch a current CRL from AMD KDS ({url}) into the trust directory, or let Donjon "
        "fetch it (`donjon attest verify --fetch`, a Steward started without --trust-dir); "
        'or set [snp] crl = "if-available" knowingly (revocation is then not checked)'
    )


def _chain(
    evidence: SnpEvidence,
    leaf: x509.Certificate,
    key: EndorsementKeyInfo,
    product: Product,
    trust: TrustStore,
    now: datetime,
    crl_mode: CrlMode,
    sim_root: SimRoot | None,
) -> ChainResult:
    p384_public_key(leaf, key.kind)
    if sim_root is not None:
        if evidence.ark is None:
            raise MalformedEvidenceError("sim evidence carries no root certificate")
        ark, pinned = evidence.ark, sim_root.sha256
        intermediates: Sequence[x509.Certificate] = evidence.intermediates
        crls: Sequence[x509.CertificateRevocationList] = evidence.crls
    else:
        ark, pinned = trust.ark(product), AMD_ARK_SHA256[product]
        intermediates = [*evidence.intermediates, *trust.intermediates(product, key.kind)]
        crls = [*evidence.crls, *trust.crls(product, key.kind, now)]
    fp = trust.fingerprint_of
    cache_key = (
        fp(leaf),
        pinned,
        fp(ark),
        crl_mode,
        *sorted(fp(c) for c in intermediates),
        "crls",
        *sorted(fp(c) for c in crls),
    )
    cached = trust.cached_chain(cache_key, now)
    if cached is not None:
        return cached
    result = verify_chain(
        leaf,
        ark=ark,
        pinned_sha256=pinned,
        intermediates=intermediates,
        crls=crls,
        now=now,
        crl_mode=crl_mode,
    )
    trust.remember_chain(cache_key, result)
    return result


def _vcek_match(report: SnpReport, key: EndorsementKeyInfo, product: Product) -> tuple[None, str]:
    reported = report.reported_tcb.components()
    if product.turin_layout and "fmc" not in reported:
        raise TcbUnsupportedError("a Turin key needs a v3+ report with the Turin TCB layout")
    if reported != key.tcb:
        raise WrongEndorsementKeyError(
            f"{key.kind} certifies TCB {_tcb_text(key.tcb)}, "
            f"but the report's reported_tcb is {_tcb_text(reported)}"
        )
    if key.kind == "VLEK":
        if any(report.chip_id):
            raise WrongEndorsementKeyError("a VLEK-signed report must have an all-zero chip_id")
        return None, f"reported_tcb matches the VLEK; chip_id zero; cspID {key.csp_id}"
    if key.hwid is None or len(key.hwid) != product.hwid_size:
        size = 0 if key.hwid is None else len(key.hwid)
        raise WrongEndorsementKeyError(
            f"VCEK hwID is {size} bytes; {product.value} uses {product.hwid_size}"
        )
    if report.mask_chip_key:
        return None, "reported_tcb matches the VCEK; chip_id masked by the guest (MASK_CHIP_KEY)"
    if report.chip_id[: product.hwid_size] != key.hwid:
        raise WrongEndorsementKeyError(
            f"the VCEK is for chip {key.hwid.hex()[:16]}..., "
            f"the report comes from chip {report.chip_id.hex()[:16]}..."
        )
    return None, "reported_tcb and chip_id match the VCEK"


def _signature(report: SnpReport, leaf: x509.Certificate) -> tuple[None, str]:
    if report.signature_algo != layout.SIG_ALGO_ECDSA_P384_SHA384:
        raise SignatureError(f"unsupported signature algorithm {report.signature_algo}")
    r, s = report.signature_ints
    if not (0 < r < _P384_ORDER and 0 < s < _P384_ORDER):
        raise SignatureError("the report's signature is out of range for P-384")
    try:
        p384_public_key(leaf, "endorsement key").verify(
            encode_dss_signature(r, s), report.signed_bytes(), ec.ECDSA(hashes.SHA384())
        )
    except InvalidSignature as exc:
        raise SignatureError("the report's ECDSA P-384 signature does not verify") from exc
    return None, "ECDSA P-384/SHA-384 over bytes 0x000..0x2A0 verifies"


def _abi_consistency(report: SnpReport) -> tuple[None, str]:
    wanted = (report.policy.abi_major, report.policy.abi_minor)
    running = (report.current_fw.major, report.current_fw.minor)
    if wanted > running:
        raise TcbUnsupportedError(
            f"guest policy needs ABI {wanted[0]}.{wanted[1]}, "
            f"but the firmware is {report.current_fw}"
        )
    return None, f"policy ABI {wanted[0]}.{wanted[1]} <= firmware {report.current_fw}"


def _tcb_text(tcb: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in tcb.items())
