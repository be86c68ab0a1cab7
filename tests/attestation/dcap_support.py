"""Helpers for the SGX/TDX tests: the DCAP vectors of expected.json, and a fake Intel PKI.

The fake Intel is the simulated TEE's TDX product (``donjon.keep.sim``) driven
piece by piece, so that a test can break exactly one thing (a revoked PCK, a
TCB Info signed by the wrong key, a debug TD...) and keep everything else
genuine. Its root is trusted only through a test :class:`RootPin`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation.dcap.chain import RootPin
from donjon.attestation.dcap.collateral import CollateralBundle
from donjon.attestation.dcap.store import IntelCollateralStore, Pool
from donjon.attestation.dcap.verify import DcapOptions, DcapVerified, verify_quote
from donjon.attestation.snp.chain import fingerprint
from donjon.attestation.verdict import Checklist, Stop
from donjon.keep.sim.tdx_hierarchy import IntelHierarchy, Issued, generate, make_leaf
from donjon.keep.sim.tdx_quote import SimPlatformTcb, collateral, sign_quote, td_report
from donjon.keep.sim.tdx_state import TdxSimConfig

DCAP_PLATFORMS = ("tdx", "sgx")
#: When the fake PKI is made, and the instant its checks run at.
FAKE_NOW = datetime(2025, 3, 1, tzinfo=UTC)


def dcap_vectors(expected: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in expected["vectors"] if v["platform"] in DCAP_PLATFORMS]


def load_quote(vectors: Path, vector: dict[str, Any]) -> bytes:
    raw = (vectors / vector["evidence"]).read_bytes()
    if vector["evidence"].endswith(".b64"):
        raw = base64.b64decode(raw)
    return raw


def verify_at(vector: dict[str, Any]) -> datetime:
    """The instant expected.json names: an exact time, or the start of 'any time A..B'."""
    text = vector["verify_at"]
    exact = re.match(r"(\d{4}-\d\d-\d\dT[\d:]+Z)", text)
    if exact:
        return datetime.fromisoformat(exact.group(1).replace("Z", "+00:00"))
    window = re.search(r"(\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d)", text)
    if window:
        start = datetime.fromisoformat(window.group(1)).replace(tzinfo=UTC)
        return start + timedelta(days=30)  # inside the PCK's seven-year window
    validity = vector.get("computed", {}).get("checks", {}).get("pck_validity")
    if validity:  # "any time": a month into the PCK's life
        return datetime.fromisoformat(validity[0]) + timedelta(days=30)
    return datetime(2025, 1, 1, tzinfo=UTC)


def run(
    quote: bytes,
    *,
    now: datetime,
    store: IntelCollateralStore | None = None,
    **options: Any,
) -> tuple[DcapVerified | None, Checklist]:
    """The DCAP pipeline alone: (result or None, the checklist)."""
    checks = Checklist()
    try:
        result = verify_quote(
            quote,
            store=store or IntelCollateralStore(),
            now=now,
            checks=checks,
            options=DcapOptions(**options),
        )
    except Stop:
        return None, checks
    return result, checks


@dataclass
class FakeIntel:
    """A fake Intel (root, PCK chain, TCB Signing) and one TDX platform under it."""

    config: TdxSimConfig = field(default_factory=TdxSimConfig)
    now: datetime = FAKE_NOW
    hierarchy: IntelHierarchy = field(init=False)
    attestation_key: ec.EllipticCurvePrivateKey = field(init=False)

    def __post_init__(self) -> None:
        ppid, instance = bytes(range(16)), bytes(range(16, 32))
        self.hierarchy = generate(self.config.pck_extensions(ppid, instance), self.now)
        self.attestation_key = ec.generate_private_key(ec.SECP256R1())

    @property
    def pin(self) -> RootPin:
        return RootPin(fingerprint(self.hierarchy.root.cert), "the fake Intel root")

    def chain_pem(self, pck: Issued | None = None) -> bytes:
        h = self.hierarchy
        certs = (pck or h.pck, h.pck_ca, h.root)
        return b"".join(c.cert.public_bytes(Encoding.PEM) for c in certs)

    def quote(
        self,
        report_data: bytes = bytes(64),
        *,
        mrtd: bytes = bytes(range(48)),
        tcb: SimPlatformTcb | None = None,
        td_attributes: int | None = None,
        mrsignerseam: bytes | None = None,
        pck: Issued | None = None,
    ) -> bytes:
        tcb = tcb or self.config.platform_tcb
        body = td_report(
            tcb,
            mrtd=mrtd,
            report_data=report_data,
            td_attributes=self.config.td_attributes if td_attributes is None else td_attributes,
            xfam=self.config.xfam,
        )
        if mrsignerseam is not None:
            body = replace(body, mrsignerseam=mrsignerseam)
        return sign_quote(
            body,
            tcb=tcb,
            pck=pck or self.hierarchy.pck,
            attestation_key=self.attestation_key,
            chain_pem=self.chain_pem(pck),
        )

    def collateral(self, now: datetime | None = None, **kwargs: Any) -> CollateralBundle:
        h = self.hierarchy
        return collateral(
            self.config.platform_tcb,
            root=h.root,
            pck_ca=h.pck_ca,
            tcb_signing=h.tcb_signing,
            fmspc=self.config.fmspc,
            now=now or self.now,
            **kwargs,
        )

    def pool(self, bundle: CollateralBundle | None = None) -> Pool:
        return Pool.of_bundle(bundle or self.collateral(), "test collateral", explicit=True)

    def revoke_pck(self, bundle: CollateralBundle, serial: int) -> CollateralBundle:
        """The bundle with a PCK CRL (signed by the real PCK CA) that revokes ``serial``."""
        ca = self.hierarchy.pck_ca
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(self.now - timedelta(days=1))
            .build()
        )
        crl = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.cert.subject)
            .last_update(self.now - timedelta(minutes=1))
            .next_update(self.now + timedelta(days=30))
            .add_revoked_certificate(revoked)
            .sign(ca.key, hashes.SHA256())
        )
        return replace(bundle, pck_crl=crl)

    def pck_valid_until(self, not_after: datetime) -> Issued:
        """Another PCK for the same platform, expiring at ``not_after``."""
        ext = self.config.pck_extensions(bytes(range(16)), bytes(range(16, 32)))
        issued = make_leaf("Intel SGX PCK Certificate", self.hierarchy.pck_ca, self.now, sgx=ext)
        builder = (
            x509.CertificateBuilder()
            .subject_name(issued.cert.subject)
            .issuer_name(issued.cert.issuer)
            .public_key(issued.key.public_key())
            .serial_number(issued.cert.serial_number)
            .not_valid_before(self.now - timedelta(days=1))
            .not_valid_after(not_after)
        )
        for ext_item in issued.cert.extensions:
            builder = builder.add_extension(ext_item.value, critical=ext_item.critical)
        cert = builder.sign(self.hierarchy.pck_ca.key, hashes.SHA256())
        return Issued(issued.key, cert)
