"""The ``cca`` platform: a Keep inside an Arm CCA Realm.

The Realm Management Monitor (RMM) makes the attestation token; a Linux arm64
Realm guest asks for it through configfs-tsm (provider ``arm_cca_guest``,
Linux >= 6.13): the 64 bytes written to ``inblob`` become the realm challenge,
and ``outblob`` is the whole CCA token (CBOR tag 399: platform token signed by
the CPAK, realm token signed by the RAK). The CSR extension is
``oids.EVIDENCE_CCA``::

    CcaEvidence ::= SEQUENCE { token OCTET STRING }

The Keep parses the token only to check that it answers this request (its realm
challenge is report_data); the Steward verifies it.
"""

from __future__ import annotations

import platform as host
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.attestation.cca.evidence import encode_cca_evidence
from donjon.attestation.cca.token import parse_token
from donjon.attestation.errors import AttestationError
from donjon.keep.platforms.base import PlatformError, PlatformUnavailable, check_report_data
from donjon.keep.platforms.configfs import ConfigfsTsm

PROVIDERS = frozenset({"arm_cca_guest"})
ARM64 = frozenset({"aarch64", "arm64"})


class CcaPlatformError(PlatformError):
    """The Realm's attestation interface gave something that is not a usable token."""


class CcaPlatform:
    name = "cca"

    def __init__(
        self,
        *,
        tsm: ConfigfsTsm | None = None,
        linux: bool | None = None,
        machine: str | None = None,
    ) -> None:
        self.tsm = tsm or ConfigfsTsm()
        self._linux = sys.platform.startswith("linux") if linux is None else linux
        self._machine = (machine or host.machine()).lower()

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1()

    def available(self) -> bool:
        """An arm64 Linux guest with configfs-tsm: only a Realm registers a provider there."""
        return self._linux and self._machine in ARM64 and self.tsm.present()

    def token(self, report_data: bytes) -> bytes:
        check_report_data(report_data)
        if not self._linux or self._machine not in ARM64:
            raise PlatformUnavailable("the cca platform needs a Linux arm64 Realm guest")
        got = self.tsm.report(report_data, providers=PROVIDERS).outblob
        where = f"{self.tsm.root}/*/outblob"
        try:
            token = parse_token(got)
        except AttestationError as exc:
            raise CcaPlatformError(f"{where}: not a CCA token: {exc.message}") from None
        if token.realm_claims.challenge != report_data:
            raise CcaPlatformError(
                f"{where}: the token's realm challenge is not the report_data requested"
            )
        return got

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        token = self.token(report_data)
        return x509.UnrecognizedExtension(oids.EVIDENCE_CCA, encode_cca_evidence(token))


def create(state_dir: Path | None = None) -> CcaPlatform:
    return CcaPlatform()
