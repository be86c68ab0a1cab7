"""The ``snp`` platform: a Keep inside an AMD SEV-SNP guest.

Evidence comes from the guest kernel, through configfs-tsm (provider
``sev_guest``; the certificate table arrives in ``auxblob``) or, on older
kernels, through the ``/dev/sev-guest`` SNP_GET_EXT_REPORT ioctl. The report is
signed by the chip's VCEK (or the cloud's VLEK); the Keep sends that
certificate along, found in this order: the host's certificate table, a local
cache, AMD's KDS. The CSR extension is Enarx's (``oids.ENARX_SNP``)::

    SEQUENCE { SEQUENCE { vcek Certificate, CrlList }, report OCTET STRING }
    CrlList ::= SEQUENCE { SEQUENCE OF SEQUENCE { url UTF8String, crl CertificateList } }

The Keep never verifies the report: the Steward does.
"""

from __future__ import annotations

import struct
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.atomicfile import write_bytes
from donjon.attestation import oids
from donjon.attestation.errors import AttestationError
from donjon.attestation.evidence import encode_enarx_snp
from donjon.attestation.kds import AMD_KDS_URL, CollateralFetcher, KdsFetcher
from donjon.attestation.snp import layout
from donjon.attestation.snp.product import Product
from donjon.attestation.snp.report import SigningKey, SnpReport, parse_report
from donjon.attestation.x509util import X509_LOAD_ERRORS
from donjon.errors import plain
from donjon.keep.platforms import default_state_dir
from donjon.keep.platforms.base import PlatformError, PlatformUnavailable, check_report_data
from donjon.keep.platforms.configfs import ConfigfsTsm
from donjon.keep.platforms.devguest import SevGuestDevice

PROVIDERS = frozenset({"sev_guest"})

#: GHCB certificate table GUIDs (AMD GHCB spec, "SNP Extended Guest Request").
GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
GUID_CRL = uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea")
_ENTRY = struct.Struct("<16sII")  # GUID, offset, length


class SnpPlatformError(PlatformError):
    """The SEV-SNP guest interface gave something that is not usable evidence."""


def parse_cert_table(blob: bytes) -> dict[uuid.UUID, bytes]:
    """The GHCB certificate table: 24-byte entries ending with an all-zero one.

    Offsets count from the start of the table. GUIDs are read in RFC 4122 byte
    order, and also in the mixed-endian order some hosts write.
    """
    out: dict[uuid.UUID, bytes] = {}
    known = {GUID_VCEK, GUID_VLEK, GUID_ASK, GUID_ARK, GUID_CRL}
    for index in range(len(blob) // _ENTRY.size):
        raw_guid, offset, length = _ENTRY.unpack_from(blob, index * _ENTRY.size)
        if raw_guid == bytes(16):
            return out
        guid = uuid.UUID(bytes=raw_guid)
        if guid not in known and uuid.UUID(bytes_le=raw_guid) in known:
            guid = uuid.UUID(bytes_le=raw_guid)
        if offset + length > len(blob) or length == 0:
            raise SnpPlatformError(
                f"certificate table entry {index} ({guid}) points outside the "
                f"{len(blob)}-byte table (offset {offset}, length {length})"
            )
        out[guid] = blob[offset : offset + length]
    if blob:
        raise SnpPlatformError("certificate table has no terminating all-zero entry")
    return out


def build_cert_table(entries: dict[uuid.UUID, bytes]) -> bytes:
    """The inverse of :func:`parse_cert_table` (for hosts, tests and the sim)."""
    header_size = _ENTRY.size * (len(entries) + 1)
    header, body = bytearray(), bytearray()
    for guid, data in entries.items():
        header += _ENTRY.pack(guid.bytes, header_size + len(body), len(data))
        body += data
    header += bytes(_ENTRY.size)
    return bytes(header + body)


@dataclass(frozen=True)
class GuestEvidence:
    """A report and whatever the host handed along with it."""

    report: bytes
    cert_table: dict[uuid.UUID, bytes]
    source: str  # "configfs-tsm" | "/dev/sev-guest"


class SnpPlatform:
    name = "snp"

    def __init__(
        self,
        *,
        tsm: ConfigfsTsm | None = None,
        device: SevGuestDevice | None = None,
        cache_dir: Path | None = None,
        fetcher: CollateralFetcher | None = None,
        vmpl: int | None = None,
        linux: bool | None = None,
    ) -> None:
        self.tsm = tsm or ConfigfsTsm()
        self.device = device or SevGuestDevice()
        self.cache_dir = cache_dir
        self._fetcher = fetcher
        self.vmpl = vmpl
        self._linux = sys.platform.startswith("linux") if linux is None else linux

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1()

    def available(self) -> bool:
        """An SNP guest has /dev/sev-guest; configfs-tsm alone could belong to another TEE."""
        return self._linux and self.device.present()

    def guest_evidence(self, report_data: bytes) -> GuestEvidence:
        check_report_data(report_data)
        if not self._linux:
            raise PlatformUnavailable("the snp platform needs a Linux SEV-SNP guest")
        if self.tsm.present():
            got = self.tsm.report(
                report_data, providers=PROVIDERS, privlevel=self.vmpl, want_aux=True
            )
            report = _check_size(got.outblob, f"{self.tsm.root}/*/outblob")
            return GuestEvidence(report, parse_cert_table(got.auxblob), "configfs-tsm")
        if self.device.present():
            dev = self.device.report(report_data, vmpl=self.vmpl or 0)
            report = _check_size(dev.report, str(self.device.path))
            return GuestEvidence(report, parse_cert_table(dev.certs), str(self.device.path))
        raise PlatformUnavailable(
            f"no SEV-SNP guest interface: neither {self.tsm.root} nor {self.device.path} exists"
        )

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        evidence = self.guest_evidence(report_data)
        try:
            report = parse_report(evidence.report, strict=False)
        except AttestationError as exc:
            raise SnpPlatformError(f"{evidence.source}: {exc.message}") from None
        if report.report_data != report_data:
            raise SnpPlatformError(
                f"{evidence.source}: the report carries other report_data than requested"
            )
        vcek = self.endorsement_key(report, evidence.cert_table)
        crls: list[tuple[str, x509.CertificateRevocationList]] = []
        crl = evidence.cert_table.get(GUID_CRL)
        product = _product(report)
        if crl is not None and product is not None:
            url = f"{AMD_KDS_URL}/vcek/v1/{product.value}/crl"
            crls.append((url, _load_crl(crl, "certificate table CRL entry")))
        der = encode_enarx_snp(evidence.report, vcek, crls)
        return x509.UnrecognizedExtension(oids.ENARX_SNP, der)

    def endorsement_key(self, report: SnpReport, table: dict[uuid.UUID, bytes]) -> x509.Certificate:
        """The VCEK or VLEK that signed ``report``: host table, then cache, then KDS."""
        guid = GUID_VLEK if report.signing_key is SigningKey.VLEK else GUID_VCEK
        if guid in table:
            return _load_cert(table[guid], f"certificate table entry {guid}")
        if report.signing_key is SigningKey.VLEK:
            raise SnpPlatformError(
                "the report is signed by a VLEK but the host gave no VLEK certificate "
                "(the cloud provider must supply it in the certificate table)"
            )
        product = _product(report)
        if product is None:
            raise SnpPlatformError(
                "cannot fetch the VCEK for a version 2 report: the product line is unknown; "
                "ask the host to provide the certificate table"
            )
        hwid = report.chip_id[: product.hwid_size]
        cached = self._cache_path(product, hwid, report.reported_tcb.raw)
        if cached is not None and cached.is_file():
            return _load_cert(cached.read_bytes(), str(cached))
        fetcher = self._fetcher or KdsFetcher()
        try:
            der = fetcher.vcek(product, hwid, report.reported_tcb)
        except AttestationError as exc:
            raise SnpPlatformError(f"cannot get the VCEK from AMD KDS: {exc.message}") from None
        cert = _load_cert(der, "the VCEK from AMD KDS")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(cached, der)
        return cert

    def _cache_path(self, product: Product, hwid: bytes, tcb: int) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"vcek-{product.value}-{hwid.hex()[:32]}-{tcb:016x}.der"


def _product(report: SnpReport) -> Product | None:
    try:
        return report.product
    except AttestationError:
        return None


def _check_size(report: bytes, where: str) -> bytes:
    if len(report) != layout.REPORT_SIZE:
        raise SnpPlatformError(
            f"{where}: got {len(report)} bytes, an SEV-SNP report is {layout.REPORT_SIZE}"
        )
    return report


def _load_crl(data: bytes, where: str) -> x509.CertificateRevocationList:
    try:
        return x509.load_der_x509_crl(data)
    except X509_LOAD_ERRORS as exc:
        raise SnpPlatformError(f"{where}: not a DER CRL: {plain(exc)}") from None


def _load_cert(data: bytes, where: str) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except X509_LOAD_ERRORS as exc:
        raise SnpPlatformError(f"{where}: not an X.509 certificate: {plain(exc)}") from None


def create(state_dir: Path | None = None) -> SnpPlatform:
    return SnpPlatform(cache_dir=(state_dir or default_state_dir()) / "snp")
