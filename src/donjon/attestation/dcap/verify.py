"""Verify a DCAP quote (SGX or TDX): quote, PCK chain, QE binding, signatures, collateral, TCB.

The pipeline every SGX and TDX verdict shares; each step records its own
check (``dcap.*``) and the first failure stops it with its own error type.
Policy (measurements, attributes, accepted statuses) is the TEE's own module's
business (``tdx/``, ``sgx/``). Work that depends only on content (the PCK
chain, the SGX extension, a collateral signature) is memoised in the
:class:`~donjon.attestation.dcap.store.IntelCollateralStore`, keyed by that
content, so a Steward verifying the same platform again pays for little more
than the two signatures that are new with every quote.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from donjon.attestation.dcap import layout
from donjon.attestation.dcap.chain import (
    PckChain,
    RevocationResult,
    RootPin,
    check_revocation,
    check_validity_all,
    verify_pck_chain,
    verify_signing_chain,
)
from donjon.attestation.dcap.collateral import (
    QeIdentity,
    Signed,
    TcbInfo,
    parse_qe_identity,
    parse_tcb_info,
    verify_body_signature,
)
from donjon.attestation.dcap.fetch import IntelFetcher
from donjon.attestation.dcap.pck import PckExtensions, pck_extensions
from donjon.attestation.dcap.quote import Quote, TdReport, parse_quote
from donjon.attestation.dcap.store import IntelCollateralStore, Pool
from donjon.attestation.dcap.tcb import REVOKED, TcbVerdict, evaluate
from donjon.attestation.errors import (
    AttestationError,
    CertificateExpiredError,
    CertificateRevokedError,
    ChainError,
    CollateralMismatchError,
    CollateralMissingError,
    CollateralSignatureError,
    CollateralStaleError,
    CrlMissingError,
    CrlSignatureError,
    CrlStaleError,
    FingerprintMismatchError,
    MalformedEvidenceError,
    QeReportBindingError,
    QeReportSignatureError,
    QuoteSignatureError,
    TcbRevokedError,
    UnsupportedCertificationDataError,
)
from donjon.attestation.roots import INTEL_SGX_ROOT_CA_SHA256
from donjon.attestation.snp.chain import CrlMode, is_current
from donjon.attestation.verdict import Check, Checklist, Stop
from donjon.attestation.x509util import load_certificate, load_certificates

TcbMode = Literal["require", "if-available"]
QeIdentityMode = Literal["require", "if-available"]

INTEL_ROOT = RootPin(INTEL_SGX_ROOT_CA_SHA256, "Intel SGX Root CA")
#: What a result says when the TCB was not judged (``tcb_mode = "if-available"``).
TCB_NOT_APPRAISED = "NotAppraised"
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)

_MISSING_HINT = (
    "give the collateral with --collateral FILE (`donjon attest collateral fetch QUOTE -o FILE`), "
    "put a collateral bundle in the trust directory, or let Donjon fetch it from Intel PCS "
    "(--fetch) or a PCCS (--pccs URL, or pccs_url in the policy); "
    '--tcb-mode if-available (or tcb_mode = "if-available") verifies without it, knowingly'
)


@dataclass(frozen=True)
class DcapOptions:
    pin: RootPin = INTEL_ROOT
    crl_mode: CrlMode = "require"
    tcb_mode: TcbMode = "require"
    qe_identity: QeIdentityMode = "require"
    fetcher: IntelFetcher | None = None
    #: Collateral given with this quote, in order: the evidence's own, then ``--collateral``.
    pools: tuple[Pool, ...] = ()
    #: "SGX" or "TDX": the TEE the evidence format promises (None: either).
    tee: str | None = None


@dataclass(frozen=True)
class Collateral:
    """The collateral that judged the quote (None where it was not available)."""

    tcb_info: TcbInfo | None
    qe_identity: QeIdentity | None
    #: Each CRL, and whether it came for this quote (a trust directory's may be foreign).
    crls: tuple[tuple[x509.CertificateRevocationList, bool], ...]
    #: TCB Signing certificates whose signatures were checked, with their root.
    signers: tuple[tuple[x509.Certificate, x509.Certificate], ...]
    sources: tuple[str, ...]
    notes: tuple[str, ...] = ()
    #: Identifies the signed collateral that judged the TCB (a memo key).
    digests: tuple[str, ...] = ()


@dataclass(frozen=True)
class DcapVerified:
    quote: Quote
    chain: PckChain
    pck: PckExtensions
    #: None: the TCB was not appraised (``tcb_mode = "if-available"`` without collateral).
    tcb: TcbVerdict | None
    revocation: RevocationResult
    collateral: Collateral
    not_after_limit: datetime
    notes: tuple[str, ...] = field(default=())

    @property
    def tcb_status(self) -> str:
        return TCB_NOT_APPRAISED if self.tcb is None else self.tcb.status

    @property
    def advisories(self) -> tuple[str, ...]:
        return () if self.tcb is None else self.tcb.advisories

    def describe(self) -> dict[str, Any]:
        c = self.collateral
        return {
            "quote": self.quote.to_dict(),
            "pck": self.pck.to_dict(),
            "chain": self.chain.describe(),
            "tcb": None
            if self.tcb is None
            else {
                "status": self.tcb.status,
                "advisories": list(self.tcb.advisories),
                "platform_status": self.tcb.platform_status,
                "tdx_module_status": self.tcb.module_status,
                "qe_status": self.tcb.qe_status,
                "tcb_date": self.tcb.level.tcb_date.isoformat(),
            },
            "collateral": {
                "tcb_info": None if c.tcb_info is None else c.tcb_info.summary(),
                "qe_identity": None if c.qe_identity is None else c.qe_identity.summary(),
                "sources": list(c.sources),
                "notes": list(c.notes),
            },
            "revocation": self.revocation.note,
        }


def verify_quote(
    data: bytes,
    *,
    store: IntelCollateralStore,
    now: datetime,
    checks: Checklist,
    options: DcapOptions = DcapOptions(),
) -> DcapVerified:
    """Run the fail-fast DCAP checks; raises :class:`Stop` after recording a failure."""
    quote = checks.step("dcap.quote", lambda: _parse(data, options.tee))
    platform = _platform(quote, store, now, checks, options)
    chain, pck, collateral, revocation = (
        platform.chain,
        platform.pck,
        platform.collateral,
        platform.revocation,
    )
    checks.step("dcap.qe_report_signature", lambda: _qe_report_signature(quote, chain))
    checks.step("dcap.qe_binding", lambda: _qe_binding(quote))
    checks.step("dcap.quote_signature", lambda: _quote_signature(quote, store))
    tcb = checks.step("dcap.tcb_status", lambda: _tcb(quote, pck, collateral, store))
    assert chain.valid_until is not None
    limits = [chain.valid_until]
    if revocation.until is not None:
        limits.append(revocation.until)
    if collateral.tcb_info is not None:
        limits.append(collateral.tcb_info.next_update)
    if collateral.qe_identity is not None:
        limits.append(collateral.qe_identity.next_update)
    return DcapVerified(
        quote=quote,
        chain=chain,
        pck=pck,
        tcb=tcb,
        revocation=revocation,
        collateral=collateral,
        not_after_limit=min(limits),
        notes=collateral.notes,
    )


@dataclass(frozen=True)
class _Platform:
    """What a quote's platform (its PCK chain and QE) proves with this collateral."""

    chain: PckChain
    pck: PckExtensions
    collateral: Collateral
    revocation: RevocationResult
    #: The checks it recorded (immutable, so a memo hit records the very same ones).
    checks: tuple[Check, ...]
    valid_from: datetime
    valid_until: datetime  # exclusive


def _platform(
    quote: Quote,
    store: IntelCollateralStore,
    now: datetime,
    checks: Checklist,
    options: DcapOptions,
) -> _Platform:
    """The PCK chain, the collateral and the revocation checks for the quote's platform.

    None of them depends on the quote beyond its certification data (the PCK chain
    and the QE report), so the conclusion is memoised, with its checks, for as long
    as no certificate, CRL or collateral candidate changes state; a quote's own
    signatures, its binding and its TCB are judged every time.
    """
    cert_data = quote.qe.certification.data
    key = (
        cert_data,
        options.pin.sha256,
        quote.tee,
        options.crl_mode,
        options.tcb_mode,
        options.qe_identity,
        options.fetcher is None,
        tuple(map(id, options.pools)),
        store.generation,
    )
    found = store.memo_lookup("platform", key, options.pools)
    if isinstance(found, _Platform) and found.valid_from <= now < found.valid_until:
        checks.checks.extend(found.checks)
        return found
    start = len(checks.checks)
    generation = store.generation
    certs = checks.step("dcap.cert_data", lambda: _cert_data(quote, store))
    chain = checks.step("dcap.pck_chain", lambda: _pck_chain(quote, certs, store, options.pin))
    pck = checks.step("dcap.pck_extensions", lambda: _pck_ext(quote, chain.leaf, store))
    checks.step("dcap.validity", lambda: _validity(chain, now))
    gathered = checks.step(
        "dcap.collateral", lambda: _gather(quote, chain, pck, store, now, options)
    )
    tcb_signed = checks.step(
        "dcap.tcb_info",
        lambda: _signed_step(gathered.tcb, "TCB Info", gathered, store, now, options),
    )
    qe_signed = checks.step(
        "dcap.qe_identity",
        lambda: _signed_step(gathered.qe, "QE Identity", gathered, store, now, options),
    )
    collateral = _collateral(gathered, tcb_signed, qe_signed)
    revocation = _revocation_step(checks, store, chain, collateral, now, options)
    window = _window(chain, gathered, collateral, revocation, store, now)
    platform = _Platform(chain, pck, collateral, revocation, tuple(checks.checks[start:]), *window)
    complete = not collateral.notes and revocation.checked
    if complete and store.generation == generation:
        store.memo_store("platform", key, options.pools, platform)
    return platform


def _window(
    chain: PckChain,
    gathered: _Gathered,
    collateral: Collateral,
    revocation: RevocationResult,
    store: IntelCollateralStore,
    now: datetime,
) -> tuple[datetime, datetime]:
    """When every certificate and CRL stays valid and no collateral candidate changes state."""
    assert chain.valid_from is not None and chain.valid_until is not None
    starts = [chain.valid_from]
    ends = [chain.valid_until + timedelta(microseconds=1)]
    for signer, _ in collateral.signers:
        starts.append(signer.not_valid_before_utc)
        ends.append(signer.not_valid_after_utc + timedelta(microseconds=1))
    if revocation.valid_from is not None:
        starts.append(revocation.valid_from)
    if revocation.valid_until is not None:
        ends.append(revocation.valid_until)
    for pool in gathered.pools:
        for signed in pool.signed:
            parse = parse_tcb_info if signed.kind == "tcb_info" else parse_qe_identity
            try:
                parsed = store.memo(
                    signed.kind,
                    signed.body,
                    lambda s=signed, f=parse: f(s.body),  # type: ignore[misc]
                )
            except MalformedEvidenceError:
                continue
            for instant in (parsed.issue_date, parsed.next_update + timedelta(microseconds=1)):
                (starts if instant <= now else ends).append(instant)
    return max(starts), min(ends)


# --- the quote and its certification data -----------------------------------------------------


def _parse(data: bytes, tee: str | None) -> tuple[Quote, str]:
    quote = parse_quote(data)
    if tee is not None and quote.tee != tee:
        raise MalformedEvidenceError(f"an {quote.tee} quote where a {tee} quote is expected")
    if any(quote.trailing):
        raise MalformedEvidenceError(
            f"{len(quote.trailing)} bytes after the quote's signature data are not zero "
            "(only zero padding is accepted after a quote)"
        )
    if quote.header.qe_vendor_id != layout.INTEL_QE_VENDOR_ID:
        raise MalformedEvidenceError(
            f"QE vendor ID {quote.header.qe_vendor_id.hex()} is not Intel's "
            f"({layout.INTEL_QE_VENDOR_ID.hex()})"
        )
    body = f", v5 body type {quote.body_type}" if quote.body_type is not None else ""
    padding = f", {len(quote.trailing)} bytes of zero padding" if quote.trailing else ""
    return quote, (
        f"{quote.tee} quote v{quote.header.version}{body}, ECDSA P-256, Intel QE{padding}"
    )


def split_pem_or_der(data: bytes) -> list[x509.Certificate]:
    """Type 5 data: a PEM chain (Intel's QE), or concatenated DER (Intel's TDX QVL sample)."""
    text = data.rstrip(b"\0")
    if b"-----BEGIN CERTIFICATE-----" in text:
        return load_certificates(text, what="PCK certificate chain")
    certs = []
    rest = text
    while rest:
        if rest[:2] != b"\x30\x82" or len(rest) < 4:
            raise MalformedEvidenceError("PCK certificate chain is neither PEM nor DER")
        size = 4 + int.from_bytes(rest[2:4], "big")
        certs.append(load_certificate(rest[:size], what="PCK certificate chain"))
        rest = rest[size:]
    return certs


def _cert_data(quote: Quote, store: IntelCollateralStore) -> tuple[list[x509.Certificate], str]:
    cert = quote.qe.certification
    if cert.type != layout.CERT_PCK_CHAIN:
        name = layout.CERT_TYPE_NAMES.get(cert.type, "unknown")
        raise UnsupportedCertificationDataError(
            f"certification data type {cert.type} ({name}) is not supported: Donjon verifies "
            "quotes that carry their PCK certificate chain (type 5)"
        )
    certs = store.memo("pck_pem", cert.data, lambda: split_pem_or_der(cert.data))
    wrapper = "type 6 (QE report) wrapping " if quote.header.version != 3 else ""
    return certs, f"{wrapper}type 5: {len(certs)} certificates"


def _pck_chain(
    quote: Quote, certs: list[x509.Certificate], store: IntelCollateralStore, pin: RootPin
) -> tuple[PckChain, str]:
    key = (quote.qe.certification.data, pin.sha256)
    chain = store.memo(
        "pck_chain", key, lambda: verify_pck_chain(certs, pin=pin, extra_roots=store.roots())
    )
    return chain, " -> ".join(chain.summary)


def _pck_ext(
    quote: Quote, leaf: x509.Certificate, store: IntelCollateralStore
) -> tuple[PckExtensions, str]:
    ext = store.memo("pck_ext", quote.qe.certification.data, lambda: pck_extensions(leaf))
    return ext, (
        f"FMSPC {ext.fmspc.hex()}, PCE-ID {ext.pceid.hex()}, PCESVN {ext.tcb.pcesvn}, "
        f"CPUSVN {ext.tcb.cpusvn.hex()}"
    )


def _validity(chain: PckChain, now: datetime) -> tuple[None, str]:
    chain.check_validity(now)
    assert chain.valid_until is not None
    return None, f"PCK, {chain.summary[1]} and root valid (until {chain.valid_until.isoformat()})"


def _verify_p256(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
        return False
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _qe_report_signature(quote: Quote, chain: PckChain) -> tuple[None, str]:
    key = chain.key
    assert key is not None  # verify_pck_chain set it
    if not _verify_p256(key, quote.qe.qe_report_signature, quote.qe.qe_report_raw):
        raise QeReportSignatureError("the QE report is not signed by the PCK certificate's key")
    return None, "QE report signed by the PCK key (ECDSA P-256/SHA-256)"


def _qe_binding(quote: Quote) -> tuple[None, str]:
    want = hashlib.sha256(quote.attestation_key + quote.qe.qe_auth_data).digest() + bytes(32)
    if not hmac.compare_digest(quote.qe.qe_report.report_data, want):
        raise QeReportBindingError(
            "the QE report's report_data is not SHA-256(attestation key || QE authentication "
            "data) followed by 32 zero bytes: the attestation key is not the QE's"
        )
    return None, "QE report_data = SHA-256(attestation key || QE auth data) || 0^32"


def _p256(quote: Quote) -> ec.EllipticCurvePublicKey:
    """The QE's attestation key (a QE keeps it across quotes, so it is memoised)."""
    point = b"\x04" + quote.attestation_key
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def _quote_signature(quote: Quote, store: IntelCollateralStore) -> tuple[None, str]:
    try:
        key = store.memo("attestation_key", quote.attestation_key, lambda: _p256(quote))
    except ValueError as exc:
        raise QuoteSignatureError("the attestation key is not a point on P-256") from exc
    if not _verify_p256(key, quote.signature, quote.signed_bytes()):
        raise QuoteSignatureError(
            "the quote's ECDSA P-256 signature over header and body does not verify"
        )
    return None, "attestation key signs the header and body (ECDSA P-256/SHA-256)"


# --- collateral -----------------------------------------------------------------------------------


@dataclass
class _Pick:
    signed: Signed
    parsed: Any
    source: str


def _select(
    kind: str,
    pools: Sequence[Pool],
    store: IntelCollateralStore,
    now: datetime,
    mismatch: Any,
) -> tuple[_Pick | None, _Pick | None]:
    """(first current candidate, newest stale one) of ``kind`` across the pools, in order."""
    parse = parse_tcb_info if kind == "tcb_info" else parse_qe_identity
    stale: _Pick | None = None
    for pool in pools:
        for signed in pool.signed:
            if signed.kind != kind:
                continue
            try:
                parsed = store.memo(kind, signed.body, lambda s=signed: parse(s.body))  # type: ignore[misc]
            except MalformedEvidenceError:
                if pool.explicit:
                    raise
                continue
            why = mismatch(parsed)
            if why is not None:
                if pool.explicit:
                    raise CollateralMismatchError(f"{pool.source}: {why}")
                continue
            pick = _Pick(signed, parsed, pool.source)
            if parsed.issue_date <= now <= parsed.next_update:
                return pick, stale
            if stale is None or parsed.next_update > stale.parsed.next_update:
                stale = pick
    return None, stale


def _crl_current_for(
    issuer: x509.Certificate,
    crls: Sequence[tuple[x509.CertificateRevocationList, bool]],
    now: datetime,
) -> bool:
    return any(c.issuer == issuer.subject and is_current(c, now) for c, _ in crls)


@dataclass(frozen=True)
class _Gathered:
    tcb: _Pick | None
    qe: _Pick | None
    crls: tuple[tuple[x509.CertificateRevocationList, bool], ...]
    pools: tuple[Pool, ...]
    notes: tuple[str, ...]


def _gather(
    quote: Quote,
    chain: PckChain,
    pck: PckExtensions,
    store: IntelCollateralStore,
    now: datetime,
    options: DcapOptions,
) -> tuple[_Gathered, str]:
    """Choose TCB Info and QE Identity (the first current ones), and pool every CRL."""
    tee = quote.tee
    qe_id = "TD_QE" if quote.is_tdx else "QE"

    def tcb_mismatch(info: TcbInfo) -> str | None:
        if info.id != tee:
            return f"TCB Info is for {info.id}, the quote is {tee}"
        if info.fmspc != pck.fmspc:
            return f"TCB Info is for FMSPC {info.fmspc.hex()}, the PCK's is {pck.fmspc.hex()}"
        if info.pceid != pck.pceid:
            return f"TCB Info is for PCE-ID {info.pceid.hex()}, the PCK's is {pck.pceid.hex()}"
        return None

    def qe_mismatch(identity: QeIdentity) -> str | None:
        if identity.id != qe_id:
            return f"QE Identity is {identity.id}, a {tee} quote needs {qe_id}"
        return None

    pools: list[Pool] = [*options.pools, store.local()]
    cached = store.cached_pool(tee, pck.fmspc, chain.ca_kind, now)
    if cached is not None:
        pools.append(cached)
    tcb, tcb_stale = _select("tcb_info", pools, store, now, tcb_mismatch)
    qe, qe_stale = _select("qe_identity", pools, store, now, qe_mismatch)
    crls = [(crl, pool.explicit) for pool in pools for crl in pool.crls]
    fetch_error: str | None = None
    if options.fetcher is not None and not (
        tcb is not None
        and qe is not None
        and _crl_current_for(chain.root, crls, now)
        and _crl_current_for(chain.ca, crls, now)
    ):
        try:
            fetched = store.fetch(options.fetcher, tee, pck.fmspc, chain.ca_kind)
        except AttestationError as exc:
            fetch_error = exc.message
        else:
            pools.append(fetched)
            crls += [(crl, True) for crl in fetched.crls]
            if tcb is None:
                tcb, stale = _select("tcb_info", [fetched], store, now, tcb_mismatch)
                tcb_stale = tcb_stale or stale
            if qe is None:
                qe, stale = _select("qe_identity", [fetched], store, now, qe_mismatch)
                qe_stale = qe_stale or stale
    notes: list[str] = []
    if tcb is None:
        why = _absent("TCB Info", tee, pck, tcb_stale, now, fetch_error)
        if options.tcb_mode == "require":
            raise why
        notes.append(f"TCB NOT APPRAISED: {why.message}")
        qe = None
    elif qe is None:
        why = _absent(f"{qe_id} Identity", tee, pck, qe_stale, now, fetch_error)
        if options.qe_identity == "require" and options.tcb_mode == "require":
            raise why
        notes.append(f"QE IDENTITY NOT APPRAISED: {why.message}")
    sources = [f"{n} from {p.source}" for n, p in (("TCB Info", tcb), ("QE Identity", qe)) if p]
    gathered = _Gathered(tcb, qe, tuple(crls), tuple(pools), tuple(notes))
    return gathered, "; ".join([*sources, *notes]) or "none"


def _signed_step(
    pick: _Pick | None,
    what: str,
    gathered: _Gathered,
    store: IntelCollateralStore,
    now: datetime,
    options: DcapOptions,
) -> tuple[tuple[Any, x509.Certificate, x509.Certificate] | None, str]:
    """A chosen TCB Info or QE Identity: signed by a TCB Signing key under the pinned root."""
    if pick is None:
        return None, f"{what}: not appraised"

    def verify() -> tuple[Any, x509.Certificate, x509.Certificate, datetime, datetime, str]:
        parsed, signer, root = _verify_signed(pick, what, gathered.pools, store, options.pin)
        reason = (
            f"{what} ({pick.source}) signed by the TCB Signing key; issued "
            f"{parsed.issue_date.isoformat()}, next update {parsed.next_update.isoformat()}"
        )
        return parsed, signer, root, signer.not_valid_before_utc, signer.not_valid_after_utc, reason

    key = (pick.signed.digest, options.pin.sha256, pick.source)
    parsed, signer, root, before, after, reason = store.memo("signed_step", key, verify)
    if not before <= now <= after:
        check_validity_all([signer], now)
    return (parsed, signer, root), reason


def _collateral(
    gathered: _Gathered,
    tcb: tuple[Any, x509.Certificate, x509.Certificate] | None,
    qe: tuple[Any, x509.Certificate, x509.Certificate] | None,
) -> Collateral:
    signers = tuple((s[1], s[2]) for s in (tcb, qe) if s is not None)
    sources = tuple(
        f"{name} from {pick.source}"
        for name, pick in (("TCB Info", gathered.tcb), ("QE Identity", gathered.qe))
        if pick is not None
    )
    digests = tuple(p.signed.digest for p in (gathered.tcb, gathered.qe) if p is not None)
    return Collateral(
        tcb_info=tcb[0] if tcb else None,
        qe_identity=qe[0] if qe else None,
        crls=gathered.crls,
        signers=signers,
        sources=sources,
        notes=gathered.notes,
        digests=digests,
    )


def _absent(
    what: str,
    tee: str,
    pck: PckExtensions,
    stale: _Pick | None,
    now: datetime,
    fetch_error: str | None,
) -> AttestationError:
    fetched = f"; fetching failed: {fetch_error}" if fetch_error else ""
    if stale is not None:
        p = stale.parsed
        when = "not issued before" if now < p.issue_date else "past its nextUpdate"
        date = p.issue_date if now < p.issue_date else p.next_update
        error: AttestationError = CollateralStaleError(
            f"the newest {what} for {tee} FMSPC {pck.fmspc.hex()} ({stale.source}) is {when} "
            f"{date.isoformat()} at {now.isoformat()}{fetched}"
        )
    else:
        error = CollateralMissingError(
            f"no {what} for {tee} FMSPC {pck.fmspc.hex()} (in the evidence, the collateral "
            f"file, the trust directory or the cache){fetched}"
        )
    error.hint = _MISSING_HINT
    return error


def _verify_signed(
    pick: _Pick, what: str, pools: Sequence[Pool], store: IntelCollateralStore, pin: RootPin
) -> tuple[Any, x509.Certificate, x509.Certificate]:
    signed = pick.signed

    def verify() -> tuple[x509.Certificate, x509.Certificate]:
        if not signed.chain:
            raise CollateralSignatureError(f"{what} ({pick.source}) comes without its issuer chain")
        roots = [*store.roots(), *(c for p in pools for c in p.certs if c.issuer == c.subject)]
        signer, root = verify_signing_chain(signed.chain, pin=pin, extra_roots=roots)
        verify_body_signature(signed, signer, f"{what} ({pick.source})")
        return signer, root

    try:
        signer, root = store.memo("signed", (signed.digest, pin.sha256), verify)
    except CollateralSignatureError:
        raise
    except (FingerprintMismatchError, ChainError) as exc:
        raise CollateralSignatureError(f"{what} ({pick.source}): {exc.message}") from exc
    return pick.parsed, signer, root


def _revocation_step(
    checks: Checklist,
    store: IntelCollateralStore,
    chain: PckChain,
    collateral: Collateral,
    now: datetime,
    options: DcapOptions,
) -> RevocationResult:
    subjects = [(chain.leaf, chain.ca), (chain.ca, chain.root)]
    for signer, root in collateral.signers:
        if all(signer is not s for s, _ in subjects):
            subjects.append((signer, root))
    mode = options.crl_mode
    crls = tuple(crl for crl, _ in collateral.crls)
    keep = (chain, *(s for s, _ in collateral.signers), *crls)
    key = (tuple(map(id, keep)), tuple(given for _, given in collateral.crls), mode)
    try:
        result = store.memo_window(
            "revocation",
            key,
            keep,
            now,
            lambda: check_revocation(subjects, collateral.crls, now=now, mode=mode),
        )
    except (CrlMissingError, CrlStaleError) as error:
        error.hint = _MISSING_HINT.replace(
            "--tcb-mode if-available (or tcb_mode", "--crl-mode if-available (or crl"
        )
        checks.fail("dcap.crl", error)
        raise Stop from error
    except CrlSignatureError as error:
        checks.fail("dcap.crl", error)
        raise Stop from error
    except (CertificateRevokedError, CertificateExpiredError) as error:
        checks.fail("dcap.revocation", error)
        raise Stop from error
    checks.ok("dcap.revocation", result.note)
    return result


def _tcb(
    quote: Quote, pck: PckExtensions, collateral: Collateral, store: IntelCollateralStore
) -> tuple[TcbVerdict | None, str]:
    info = collateral.tcb_info
    if info is None:
        return None, "TCB NOT APPRAISED (no TCB collateral; tcb_mode = if-available)"
    body = quote.body
    tee = b""
    if isinstance(body, TdReport):
        tee = body.tee_tcb_svn + body.mrsignerseam + body.seam_attributes
        tee += body.tee_tcb_svn2 or b""
    # The status depends only on the collateral, the PCK, the TD's module and the QE report.
    key = (collateral.digests, quote.qe.certification.data, tee, quote.qe.qe_report_raw)
    verdict, reason = store.memo(
        "tcb", key, lambda: _evaluate(info, pck, body, collateral.qe_identity, quote)
    )
    if verdict.status == REVOKED:
        raise TcbRevokedError(
            f"Intel's TCB status for this platform is Revoked ({reason}); "
            f"advisories: {', '.join(verdict.advisories) or 'none'}"
        )
    return verdict, reason


def _evaluate(
    info: TcbInfo, pck: PckExtensions, body: Any, qe: QeIdentity | None, quote: Quote
) -> tuple[TcbVerdict, str]:
    verdict = evaluate(info, pck.tcb, body, qe, quote.qe.qe_report)
    advisories = f"; advisories {', '.join(verdict.advisories)}" if verdict.advisories else ""
    return verdict, verdict.describe() + advisories
