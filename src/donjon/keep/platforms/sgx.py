"""The ``sgx`` platform: a Keep running in an SGX enclave under Gramine.

Gramine exposes DCAP attestation as pseudo-files::

    /dev/attestation/attestation_type    "dcap" (or "none", "epid")
    /dev/attestation/user_report_data    write 64 bytes
    /dev/attestation/quote               read the SGX quote (v3) over them

The CSR extension is Enarx's (``oids.ENARX_SGX``)::

    SEQUENCE { quote OCTET STRING, CrlList, TcbPackage }
    CrlList    ::= SEQUENCE { SEQUENCE OF SEQUENCE { url UTF8String, crl CertificateList } }
    TcbPackage ::= SEQUENCE { SEQUENCE OF Certificate, tcbInfo OCTET STRING }

A Keep inside an enclave has no collateral of its own, so it sends an empty
CRL list and TCB package; the Steward fetches collateral from Intel PCS.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.attestation.sgx.evidence import encode_enarx_sgx
from donjon.keep.platforms.base import PlatformError, PlatformUnavailable, check_report_data
from donjon.keep.platforms.configfs import OsTsmFs, TsmFs

GRAMINE_ATTESTATION = Path("/dev/attestation")

#: Intel SGX DCAP quote v3: 48-byte header, then the 384-byte enclave report body,
#: whose REPORTDATA is its last 64 bytes (offset 320).
QUOTE_HEADER_SIZE = 48
SGX_REPORT_DATA_OFFSET = QUOTE_HEADER_SIZE + 320
TEE_TYPE_SGX = 0x00


class SgxPlatformError(PlatformError):
    """Gramine's attestation interface gave something that is not a usable quote."""


def quote_report_data(quote: bytes, where: str) -> bytes:
    if len(quote) < SGX_REPORT_DATA_OFFSET + 64 + 4:
        raise SgxPlatformError(f"{where}: {len(quote)} bytes is too short for an SGX quote")
    version, _key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if version != 3 or tee_type != TEE_TYPE_SGX:
        raise SgxPlatformError(
            f"{where}: not an SGX DCAP quote v3 (version {version}, TEE type {tee_type:#x})"
        )
    return quote[SGX_REPORT_DATA_OFFSET : SGX_REPORT_DATA_OFFSET + 64]


class SgxPlatform:
    name = "sgx"

    def __init__(
        self,
        root: Path = GRAMINE_ATTESTATION,
        fs: TsmFs | None = None,
        linux: bool | None = None,
    ) -> None:
        self.root = root
        self.fs: TsmFs = fs or OsTsmFs()
        self._linux = sys.platform.startswith("linux") if linux is None else linux

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1()

    def available(self) -> bool:
        if not (self._linux and self.fs.is_dir(self.root)):
            return False
        try:
            return self._attestation_type() == "dcap"
        except PlatformError:
            return False

    def _attestation_type(self) -> str:
        path = self.root / "attestation_type"
        try:
            return self.fs.read(path).decode("ascii", "replace").strip()
        except OSError as exc:
            raise SgxPlatformError(f"cannot read {path}: {exc.strerror or exc}") from None

    def quote(self, report_data: bytes) -> bytes:
        check_report_data(report_data)
        if not (self._linux and self.fs.is_dir(self.root)):
            raise PlatformUnavailable(
                f"not in an SGX enclave under Gramine: {self.root} does not exist"
            )
        kind = self._attestation_type()
        if kind != "dcap":
            raise PlatformUnavailable(
                f"Gramine attestation type is {kind!r}; Donjon needs DCAP "
                '(sgx.remote_attestation = "dcap" in the manifest)'
            )
        target = self.root / "user_report_data"
        try:
            self.fs.write(target, report_data)
            quote = self.fs.read(self.root / "quote")
        except OSError as exc:
            where = exc.filename or self.root
            raise SgxPlatformError(f"Gramine attestation: {where}: {exc.strerror or exc}") from None
        where = str(self.root / "quote")
        if quote_report_data(quote, where) != report_data:
            raise SgxPlatformError(f"{where}: the quote carries other report_data than requested")
        return quote

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        quote = self.quote(report_data)
        return x509.UnrecognizedExtension(oids.ENARX_SGX, encode_enarx_sgx(quote))


def create(state_dir: Path | None = None) -> SgxPlatform:
    return SgxPlatform()
