"""The ``tdx`` platform: a Keep inside an Intel TDX guest (a trust domain).

A remotely verifiable TDX quote comes from the host's quoting service, which
turns the trust domain's TDREPORT (MAC'd for the local platform only) into a DCAP
quote. The guest kernel offers two ways to ask for it, tried in this order:

1. configfs-tsm (provider ``tdx_guest``, Linux >= 6.7);
2. ``/dev/tdx_guest``: TDX_CMD_GET_REPORT0, then TDX_CMD_GET_QUOTE, which only the
   TDX kernels that predate configfs-tsm have. An upstream kernel without configfs-tsm
   gives only the TDREPORT, which proves nothing remotely, so the platform refuses.

The CSR extension is ``oids.EVIDENCE_TDX``::

    TdxEvidence ::= SEQUENCE {
        quote  OCTET STRING }   -- DCAP quote v4 or v5, its PCK chain inside
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.attestation.tdx.evidence import encode_tdx_evidence
from donjon.keep.platforms.base import PlatformError, PlatformUnavailable, check_report_data
from donjon.keep.platforms.configfs import ConfigfsTsm
from donjon.keep.platforms.devguest import TdxGuestDevice

PROVIDERS = frozenset({"tdx_guest"})

#: Intel DCAP quote layout (Intel TDX DCAP Quote Generation Library, "Quote Format").
QUOTE_HEADER_SIZE = 48
TEE_TYPE_TDX = 0x81
TD_REPORT_BODY_SIZE = 584
#: REPORTDATA offset inside the TD report body: TEE_TCB_SVN 16, MRSEAM 48, MRSIGNERSEAM 48,
#: SEAMATTRIBUTES 8, TDATTRIBUTES 8, XFAM 8, MRTD 48, MRCONFIGID 48, MROWNER 48,
#: MROWNERCONFIG 48, RTMR0..3 4x48.
TD_REPORT_DATA_OFFSET = 520


class TdxPlatformError(PlatformError):
    """The TDX guest interface gave something that is not a usable quote."""


def quote_report_data(quote: bytes, where: str) -> bytes:
    """The 64 bytes of REPORTDATA in a v4 or v5 TDX quote, after structural checks."""
    if len(quote) < QUOTE_HEADER_SIZE + 6:
        raise TdxPlatformError(f"{where}: {len(quote)} bytes is too short for a TDX quote")
    version, _key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if tee_type != TEE_TYPE_TDX:
        raise TdxPlatformError(f"{where}: TEE type {tee_type:#x} is not TDX (0x81)")
    if version == 4:
        body = QUOTE_HEADER_SIZE
    elif version == 5:
        body = QUOTE_HEADER_SIZE + 6  # body type u16, body size u32
    else:
        raise TdxPlatformError(f"{where}: quote version {version} is not 4 or 5")
    end = body + TD_REPORT_BODY_SIZE
    if len(quote) < end + 4:
        raise TdxPlatformError(
            f"{where}: {len(quote)} bytes is too short for a version {version} TDX quote"
        )
    start = body + TD_REPORT_DATA_OFFSET
    return quote[start : start + 64]


class TdxPlatform:
    name = "tdx"

    def __init__(
        self,
        *,
        tsm: ConfigfsTsm | None = None,
        device: TdxGuestDevice | None = None,
        linux: bool | None = None,
    ) -> None:
        self.tsm = tsm or ConfigfsTsm()
        self.device = device or TdxGuestDevice()
        self._linux = sys.platform.startswith("linux") if linux is None else linux

    def key_curve(self) -> ec.EllipticCurve:
        """P-384, as the Steward demands for TDX (its binding hashes with SHA-512)."""
        return ec.SECP384R1()

    def available(self) -> bool:
        """A TDX guest has /dev/tdx_guest; whether its kernel can quote shows only on asking."""
        return self._linux and self.device.present()

    def quote(self, report_data: bytes) -> bytes:
        check_report_data(report_data)
        if not self._linux:
            raise PlatformUnavailable("the tdx platform needs a Linux TDX guest")
        if self.tsm.present():
            got = self.tsm.report(report_data, providers=PROVIDERS).outblob
            where = f"{self.tsm.root}/*/outblob"
        elif self.device.present():
            got = self.device.quote(report_data)
            where = f"{self.device.path} GetQuote"
        else:
            raise PlatformUnavailable(f"not a TDX guest: {self.device.path} does not exist")
        if quote_report_data(got, where) != report_data:
            raise TdxPlatformError(f"{where}: the quote carries other report_data than requested")
        return got

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        quote = self.quote(report_data)
        return x509.UnrecognizedExtension(oids.EVIDENCE_TDX, encode_tdx_evidence(quote))


def create(state_dir: Path | None = None) -> TdxPlatform:
    return TdxPlatform()
