"""Verify Azure confidential-VM evidence: hardware report, runtime claims, AK, TPM quote.

Each step records its own check and stops at the first failure:

1. ``azure.hcl_report``: the HCL report's layout (and a TDX flavour's TDREPORT);
2. ``azure.runtime_claims``: the runtime-claims JSON, strictly;
3. the hardware report, by the SNP pipeline (``snp.*`` checks) or, for TDX, the DCAP
   verifier on the TD quote (``dcap.*``, ``[azure.tdx]``) and ``azure.td_report`` (that
   quote describes the HCL report's TDREPORT);
4. ``azure.report_data``: report_data[0:32] == SHA-256(runtime claims), the rest zero;
5. ``azure.ak``: the vTPM attestation key (HCLAkPub) from those claims;
6. ``azure.quote_signature``: RSASSA-PKCS1-v1_5/SHA-256 over the TPMS_ATTEST by the AK;
7. ``azure.quote``: TPMS_ATTEST magic, type and one SHA-256 PCR bank;
8. ``binding.report_data``: extraData == SHA-512(CSR SPKI || claims), cut to its length;
9. ``azure.pcr_digest``: the PCR values sent along hash to the signed digest.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from donjon.attestation.azure.evidence import AzureEvidence, TpmQuote
from donjon.attestation.azure.hcl import HardwareKind, HclReport, parse_hcl_report
from donjon.attestation.azure.policy import AzurePolicy
from donjon.attestation.azure.runtime import (
    RuntimeClaims,
    attestation_key,
    parse_runtime_claims,
)
from donjon.attestation.azure.tdreport import TdReport, check_quote_matches, parse_td_report
from donjon.attestation.azure.tpm import (
    TPM_ALG_SHA256,
    QuoteInfo,
    parse_attest,
    parse_rsassa_signature,
    pcr_digest,
)
from donjon.attestation.dcap.entry import QuoteJudgement
from donjon.attestation.errors import (
    AttestationError,
    CollateralMissingError,
    PcrDigestMismatchError,
    ReportDataMismatchError,
    RuntimeClaimsMismatchError,
    TpmQuoteFormatError,
    TpmQuoteSignatureError,
)
from donjon.attestation.registry import VerifyContext, check_binding
from donjon.attestation.roots import AMD_ARK_SHA256
from donjon.attestation.snp.chain import CrlMode
from donjon.attestation.snp.entry import trusted_sim_root
from donjon.attestation.snp.verify import SimRoot, SnpEvidence, SnpVerified, verify_snp
from donjon.attestation.tdx.entry import verify_td_quote
from donjon.attestation.verdict import Stop

#: Lengths of the TPM's qualifying data that can carry Donjon's binding: SHA-512 cut to
#: the largest digest the TPM implements (SHA-256, SHA-384 or SHA-512).
BINDING_SIZES = (32, 48, 64)
PCR_SIZE = 32


@dataclass(frozen=True)
class AzureVerified:
    hcl: HclReport
    claims: RuntimeClaims
    quote: QuoteInfo
    pcrs: dict[int, bytes]
    snp: SnpVerified | None
    #: The TDX flavour's TD quote, as the DCAP verifier judged it.
    tdx: QuoteJudgement | None
    td_report: TdReport | None
    #: The hardware chain ends at the simulator's ARK ([sim] trust): development evidence.
    development: bool
    crl_mode: CrlMode | None

    @property
    def platform(self) -> str:
        return self.hcl.kind.platform


def verify_azure(evidence: AzureEvidence, ctx: VerifyContext, policy: AzurePolicy) -> AzureVerified:
    """Run the fail-fast checks; raises :class:`Stop` after recording a failure."""
    checks = ctx.checks
    # The HCL report is the same at every attestation of a VM until it reboots: its parse
    # (not any check of it) is memoised by digest.
    key = ("azure.hcl", hashlib.sha256(evidence.hcl_report).hexdigest())
    hcl, td_report = checks.step(
        "azure.hcl_report",
        lambda: ctx.trust.parsed((*key, "report"), lambda: _hcl(evidence.hcl_report)),
    )
    claims = checks.step(
        "azure.runtime_claims", lambda: ctx.trust.parsed((*key, "claims"), lambda: _claims(hcl))
    )
    snp: SnpVerified | None = None
    tdx: QuoteJudgement | None = None
    development = False
    mode: CrlMode | None = None
    if hcl.kind is HardwareKind.SNP:
        snp, development, mode = _snp(ctx, hcl, evidence, policy)
        report_data = snp.report.report_data
    else:
        assert td_report is not None
        tdx = _tdx(ctx, td_report, evidence, policy)
        report_data = tdx.report_data
    checks.step("azure.report_data", lambda: _report_data(report_data, claims))
    ak = checks.step("azure.ak", lambda: ctx.trust.parsed((*key, "ak"), lambda: _ak(claims)))
    quote = evidence.quote
    if quote is None:
        checks.fail(
            "azure.quote_signature",
            CollateralMissingError(
                "the HCL report came without its vTPM quote: give it (--quote tpm-quote.json)"
            ),
        )
        raise Stop
    checks.step("azure.quote_signature", lambda: _signature(ak, quote))
    info = checks.step("azure.quote", lambda: _attest(quote))
    _binding(ctx, info.extra_data)
    pcrs = checks.step("azure.pcr_digest", lambda: _pcr_digest(info, quote))
    return AzureVerified(hcl, claims, info, pcrs, snp, tdx, td_report, development, mode)


def _hcl(data: bytes) -> tuple[tuple[HclReport, TdReport | None], str]:
    hcl = parse_hcl_report(data)
    td = parse_td_report(hcl.hardware_report) if hcl.kind is HardwareKind.TDX else None
    return (hcl, td), (
        f"header v{hcl.version}, {hcl.kind.name} report, "
        f"{len(hcl.runtime_claims)}-byte runtime claims"
    )


def _claims(hcl: HclReport) -> tuple[RuntimeClaims, str]:
    claims = parse_runtime_claims(hcl.runtime_claims)
    kids = ", ".join(k.kid for k in claims.keys)
    return claims, f"keys {kids}; vmUniqueId {claims.vm.vm_unique_id}"


# --- hardware ----------------------------------------------------------------------------


def _snp(
    ctx: VerifyContext, hcl: HclReport, evidence: AzureEvidence, policy: AzurePolicy
) -> tuple[SnpVerified, bool, CrlMode]:
    material = ctx.options.material
    certs = list(evidence.certificates)
    if not certs and material.get("vcek") is not None:
        certs = [material["vcek"], *material.get("chain", ())]
    sim = _sim_root(ctx)
    pinned = AMD_ARK_SHA256.values()
    intermediates: list[x509.Certificate] = []
    ark: x509.Certificate | None = None
    for cert in certs[1:]:
        fp = ctx.trust.fingerprint_of(cert)
        if fp in pinned:
            continue  # AMD's ARK: the trust store supplies it, pinned
        if sim is not None and fp == sim.sha256:
            ark = cert
        else:
            intermediates.append(cert)
    sim_root = sim if ark is not None else None
    if sim_root is not None:
        ctx.checks.ok(
            "azure.vendor_root",
            "the simulator's ARK ([sim] trust): a simulated paravisor, DEVELOPMENT only",
        )
    mode: CrlMode = (
        "if-available" if sim_root is not None else (ctx.options.crl_mode or policy.snp.crl)
    )
    ctx.used_crl_mode = mode
    snp_evidence = SnpEvidence(
        report=hcl.hardware_report,
        endorsement=certs[0] if certs else None,
        intermediates=tuple(intermediates),
        crls=tuple(material.get("crls", ())),
        ark=ark,
    )
    verified = verify_snp(
        snp_evidence,
        trust=ctx.trust,
        now=ctx.now,
        checks=ctx.checks,
        product_hint=ctx.options.product,
        crl_mode=mode,
        sim_root=sim_root,
    )
    return verified, sim_root is not None, mode


def _sim_root(ctx: VerifyContext) -> SimRoot | None:
    """The simulator ARK that ``[sim] trust`` names, when the policy names one.

    Only a chain that ends there is simulated; any other root must be a pinned AMD ARK
    (an unknown one fails the SNP chain check).
    """
    sim = ctx.policy.sim
    if sim is None or sim.trust is None:
        return None
    try:
        root, _ = trusted_sim_root(ctx)
    except AttestationError as error:  # an unreadable [sim] trust file: say so, refuse
        ctx.checks.fail("azure.vendor_root", error)
        raise Stop from error
    return root


def _tdx(
    ctx: VerifyContext, td_report: TdReport, evidence: AzureEvidence, policy: AzurePolicy
) -> QuoteJudgement:
    """The TD quote IMDS made of the TDREPORT: the DCAP pipeline, ``[azure.tdx]``, then the
    quote must describe this very TDREPORT. Its report_data is bound by the caller."""
    quote = evidence.td_quote
    if quote is None:
        quote = ctx.options.material.get("td_quote")
    if quote is None:
        ctx.checks.fail(
            "tdx.quote",
            CollateralMissingError(
                "Azure TDX evidence needs the TD quote that IMDS made of its TDREPORT "
                "(--td-quote td-quote.bin)"
            ),
        )
        raise Stop
    td_quote: bytes = quote
    judgement = verify_td_quote(
        td_quote,
        ctx,
        policy=replace(policy.tdx, rules=policy.rules),
        bind=False,
        platform="azure-tdx",
        section="azure",
    )
    ctx.checks.step("azure.td_report", lambda: (None, check_quote_matches(td_report, td_quote)))
    return judgement


# --- runtime claims, AK, quote --------------------------------------------------------------


def _report_data(report_data: bytes, claims: RuntimeClaims) -> tuple[None, str]:
    want = hashlib.sha256(claims.raw).digest()
    if not hmac.compare_digest(report_data[:32], want):
        raise RuntimeClaimsMismatchError(
            "report_data[0:32] is not SHA-256 of the runtime claims: "
            "the claims (and the AK in them) are not the ones the hardware signed"
        )
    if any(report_data[32:]):
        raise RuntimeClaimsMismatchError("report_data[32:64] is not zero, as the HCL writes it")
    return None, "report_data[0:32] = SHA-256(runtime claims JSON)"


def _ak(claims: RuntimeClaims) -> tuple[rsa.RSAPublicKey, str]:
    key = attestation_key(claims)
    return key, f"HCLAkPub: RSA-{key.key_size}"


def _signature(ak: rsa.RSAPublicKey, quote: TpmQuote) -> tuple[None, str]:
    signature = parse_rsassa_signature(quote.signature)
    try:
        ak.verify(signature, quote.attest, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise TpmQuoteSignatureError(
            "the TPM quote's signature does not verify with HCLAkPub: "
            "another TPM (or another key) signed it, or it was changed"
        ) from exc
    return None, "RSASSA-PKCS1-v1_5/SHA-256 by HCLAkPub verifies"


def _attest(quote: TpmQuote) -> tuple[QuoteInfo, str]:
    info = parse_attest(quote.attest)
    if len(info.selections) != 1 or info.selections[0].hash_alg != TPM_ALG_SHA256:
        raise TpmQuoteFormatError("the quote must cover exactly one PCR bank, SHA-256")
    if len(info.pcr_digest) != PCR_SIZE:
        raise TpmQuoteFormatError(f"the quote's PCR digest is {len(info.pcr_digest)} bytes, not 32")
    pcrs = info.selections[0].pcrs
    return info, f"TPM_GENERATED quote over SHA-256 PCRs {_ranges(pcrs)}"


def _binding(ctx: VerifyContext, extra: bytes) -> None:
    if ctx.subject is not None and len(extra) not in BINDING_SIZES:
        ctx.checks.fail(
            "binding.report_data",
            ReportDataMismatchError(
                f"the quote's extraData is {len(extra)} bytes; Donjon's binding is 32, 48 "
                "or 64 bytes of SHA-512(CSR public key || workload claims)"
            ),
        )
        raise Stop
    check_binding(ctx, extra, enarx=None, size=len(extra))


def _pcr_digest(info: QuoteInfo, quote: TpmQuote) -> tuple[dict[int, bytes], str]:
    selected = info.selections[0].pcrs
    if len(quote.pcrs) != len(selected):
        raise PcrDigestMismatchError(
            f"{len(quote.pcrs)} PCR values came with a quote over {len(selected)} PCRs"
        )
    for index, value in zip(selected, quote.pcrs, strict=True):
        if len(value) != PCR_SIZE:
            raise PcrDigestMismatchError(f"PCR {index} is {len(value)} bytes, not 32")
    if not hmac.compare_digest(pcr_digest(quote.pcrs), info.pcr_digest):
        raise PcrDigestMismatchError(
            "the PCR values sent along do not hash to the digest the TPM signed"
        )
    return dict(zip(selected, quote.pcrs, strict=True)), "SHA-256(PCR values) = pcrDigest"


def _ranges(pcrs: tuple[int, ...]) -> str:
    if pcrs and pcrs == tuple(range(pcrs[0], pcrs[-1] + 1)):
        return f"{pcrs[0]}-{pcrs[-1]}"
    return ",".join(map(str, pcrs))


def describe_quote(info: QuoteInfo, pcrs: dict[int, bytes]) -> dict[str, Any]:
    return {**info.to_dict(), "pcrs": {str(i): v.hex() for i, v in sorted(pcrs.items())}}
