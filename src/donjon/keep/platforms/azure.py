"""The ``azure`` platform: a Keep inside an Azure confidential VM (SEV-SNP or TDX).

Azure's CVMs expose no ``/dev/sev-guest`` or ``/dev/tdx_guest``: a paravisor
(the HCL) below the guest fetched the hardware report at boot and left it in
the vTPM, NV index ``0x01400001`` (the HCL report). Its report_data binds a
runtime-claims JSON holding the vTPM's attestation key (HCLAkPub, persisted at
``0x81000003``). The Keep sends:

* the HCL report, read from NV;
* a TPM2_Quote by that AK over the SHA-256 PCRs 0-23, whose qualifying data is
  Donjon's binding ``SHA-512(SPKI || claims)`` cut to what the TPM accepts
  (sizeof(TPMU_HA): 64 bytes on a TPM with SHA-512, 48 with SHA-384, else 32),
  with the PCR values it covers (re-quoted if a PCR moved in between);
* SNP: the VCEK and its chain from Azure's THIM (IMDS), else the cache, else AMD KDS;
* TDX: the DCAP quote Azure's IMDS makes of the HCL report's TDREPORT.

The CSR extension is ``oids.EVIDENCE_AZURE`` (``donjon.attestation.azure.evidence``).
The TPM is reached through ``$DONJON_TPM_TCTI`` (default ``/dev/tpmrm0``), IMDS
through ``$DONJON_AZURE_IMDS_URL``. The Keep never verifies: the Steward does.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import oids
from donjon.attestation.azure.evidence import AzureEvidence, TpmQuote, encode_azure_evidence
from donjon.attestation.azure.hcl import (
    AK_HANDLE,
    NV_INDEX,
    HardwareKind,
    HclReport,
    parse_hcl_report,
)
from donjon.attestation.azure.runtime import attestation_key, parse_runtime_claims
from donjon.attestation.azure.tdreport import parse_td_report, quote_body
from donjon.attestation.azure.tpm import QUOTED_PCRS, parse_attest, pcr_digest
from donjon.attestation.errors import AttestationError
from donjon.attestation.kds import CollateralFetcher
from donjon.attestation.snp.report import parse_report
from donjon.keep.platforms import default_state_dir
from donjon.keep.platforms.base import PlatformError, PlatformUnavailable, check_report_data
from donjon.keep.platforms.imds import Imds, ImdsError
from donjon.keep.platforms.snp import GUID_VCEK, SnpPlatform
from donjon.keep.platforms.tpm import Tpm, TpmError, device_of, open_tpm, tcti_spec

#: A quote is retried when a PCR was extended between TPM2_Quote and TPM2_PCR_Read.
QUOTE_ATTEMPTS = 3
#: The binding is SHA-512: 64 bytes at most, whatever the TPM accepts.
BINDING_SIZE = 64


class AzurePlatformError(PlatformError):
    """The vTPM or IMDS gave something that is not usable Azure evidence."""


@dataclass(frozen=True)
class Detection:
    """What ``donjon platform info`` shows for Azure: each step, and how far it got."""

    tcti: str
    library: str | None  # None: tpm2-pytss loads; else why not
    tpm: str | None  # None: the TPM answered; else why not
    nv: bool  # NV 0x01400001 exists
    kind: HardwareKind | None  # the HCL report's hardware, when it parses
    report_error: str | None = None

    @property
    def usable(self) -> bool:
        return self.kind is not None


class AzurePlatform:
    name = "azure"

    def __init__(
        self,
        *,
        tcti: str | None = None,
        imds: Imds | None = None,
        cache_dir: Path | None = None,
        fetcher: CollateralFetcher | None = None,
        linux: bool | None = None,
    ) -> None:
        self.tcti = tcti
        self.imds = imds or Imds()
        self.cache_dir = cache_dir
        self._fetcher = fetcher
        self._linux = sys.platform.startswith("linux") if linux is None else linux

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1()

    def detect(self) -> Detection:
        """Look for the vTPM and the HCL report (reads NV; never quotes)."""
        spec = tcti_spec(self.tcti)
        device = device_of(spec)
        if not self._linux and device is not None:
            return Detection(spec, None, "a vTPM device needs Linux", False, None)
        if device is not None and not device.exists():
            return Detection(spec, None, f"{device} does not exist", False, None)
        try:
            with open_tpm(self.tcti) as tpm:
                raw = _read_report(tpm)
        except PlatformUnavailable as exc:
            return Detection(spec, exc.message, "not tried", False, None)
        except _NoReport:
            return Detection(spec, None, None, False, None)
        except PlatformError as exc:
            return Detection(spec, None, exc.message, False, None)
        try:
            hcl = parse_hcl_report(raw)
        except AttestationError as exc:
            return Detection(spec, None, None, True, None, exc.message)
        return Detection(spec, None, None, True, hcl.kind)

    def available(self) -> bool:
        try:
            return self.detect().usable
        except Exception:  # a probe must never break platform selection
            return False

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        check_report_data(report_data)
        with open_tpm(self.tcti) as tpm:
            try:
                raw = _read_report(tpm)
            except _NoReport:
                raise PlatformUnavailable(
                    f"not an Azure confidential VM: the vTPM has no HCL report "
                    f"(NV index 0x{NV_INDEX:08x})"
                ) from None
            hcl = _parse(raw)
            _check_ak(tpm, hcl)
            qualifying = report_data[: min(tpm.max_digest_size(), BINDING_SIZE)]
            quote = _quote(tpm, qualifying)
        if hcl.kind is HardwareKind.SNP:
            evidence = AzureEvidence(raw, quote, certificates=self._snp_chain(hcl))
        else:
            evidence = AzureEvidence(raw, quote, td_quote=self._td_quote(hcl))
        return x509.UnrecognizedExtension(oids.EVIDENCE_AZURE, encode_azure_evidence(evidence))

    def _snp_chain(self, hcl: HclReport) -> tuple[x509.Certificate, ...]:
        """VCEK, then ASK and ARK: from THIM, else the cache or AMD KDS (VCEK only)."""
        try:
            report = parse_report(hcl.hardware_report, strict=False)
        except AttestationError as exc:
            raise AzurePlatformError(f"HCL report: its SNP report: {exc.message}") from None
        snp = SnpPlatform(cache_dir=self.cache_dir, fetcher=self._fetcher, linux=True)
        try:
            thim = self.imds.snp_certificates()
        except ImdsError as exc:
            try:
                return (snp.endorsement_key(report, {}),)
            except PlatformError as fallback:
                raise AzurePlatformError(
                    f"no VCEK: {exc.message}; and {fallback.message}"
                ) from None
        if not thim:
            raise AzurePlatformError("THIM answered with no certificate")
        vcek = snp.endorsement_key(report, {GUID_VCEK: thim[0].public_bytes(Encoding.DER)})
        return (vcek, *thim[1:])

    def _td_quote(self, hcl: HclReport) -> bytes:
        try:
            td_report = parse_td_report(hcl.hardware_report)
        except AttestationError as exc:
            raise AzurePlatformError(f"HCL report: {exc.message}") from None
        quote = self.imds.td_quote(td_report.raw)
        try:
            body = quote_body(quote)
        except AttestationError as exc:
            raise AzurePlatformError(f"IMDS tdquote: {exc.message}") from None
        if body[520:584] != td_report.report_data:
            raise AzurePlatformError(
                "IMDS tdquote: the quote carries other report_data than the TDREPORT"
            )
        return quote


class _NoReport(PlatformError):
    """The TPM has no NV index 0x01400001: not an Azure CVM."""


def _read_report(tpm: Tpm) -> bytes:
    if tpm.nv_size(NV_INDEX) is None:
        raise _NoReport(f"no NV index 0x{NV_INDEX:08x}")
    return tpm.nv_read(NV_INDEX)


def _parse(raw: bytes) -> HclReport:
    try:
        return parse_hcl_report(raw)
    except AttestationError as exc:
        raise AzurePlatformError(f"vTPM NV 0x{NV_INDEX:08x}: {exc.message}") from None


def _check_ak(tpm: Tpm, hcl: HclReport) -> None:
    """The key at 0x81000003 is the HCLAkPub the report names (else the Steward refuses)."""
    try:
        expected = attestation_key(parse_runtime_claims(hcl.runtime_claims))
    except AttestationError as exc:
        raise AzurePlatformError(f"HCL report: {exc.message}") from None
    try:
        actual = tpm.rsa_public(AK_HANDLE)
    except TpmError as exc:
        raise AzurePlatformError(f"vTPM attestation key: {exc.message}") from None
    if actual.public_numbers() != expected.public_numbers():
        raise AzurePlatformError(
            f"the vTPM key at 0x{AK_HANDLE:08x} is not the HCLAkPub of the HCL report"
        )


def _quote(tpm: Tpm, qualifying: bytes) -> TpmQuote:
    for _ in range(QUOTE_ATTEMPTS):
        attest, signature = tpm.quote(AK_HANDLE, QUOTED_PCRS, qualifying)
        values = tpm.pcr_values(QUOTED_PCRS)
        try:
            info = parse_attest(attest)
        except AttestationError as exc:
            raise AzurePlatformError(f"TPM quote: {exc.message}") from None
        if info.extra_data != qualifying:
            raise AzurePlatformError("TPM quote: it carries other qualifying data than asked")
        if pcr_digest(values) == info.pcr_digest:
            return TpmQuote(attest, signature, tuple(values))
    raise AzurePlatformError(
        f"the PCRs changed between quote and read {QUOTE_ATTEMPTS} times in a row"
    )


def create(state_dir: Path | None = None) -> AzurePlatform:
    return AzurePlatform(cache_dir=(state_dir or default_state_dir()) / "snp")
