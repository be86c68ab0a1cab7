"""Build and sign TDX quotes (v4) and their collateral with the simulated Intel hierarchy.

The quote is the verifier's own model (:mod:`donjon.attestation.dcap.quote`)
serialised by its own code: header, TD report, the QE report signed by the PCK
key (its report_data binding the attestation key), the attestation key's
signature, and the PCK chain in PEM inside certification data type 6. The
collateral is what Intel PCS would serve for this platform: TCB Info v3 and
TD_QE Identity signed by the TCB Signing key, and the two CRLs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from donjon.attestation.dcap import layout
from donjon.attestation.dcap.collateral import CollateralBundle, Signed
from donjon.attestation.dcap.quote import (
    CertificationData,
    EnclaveReport,
    QeCertificationData,
    Quote,
    QuoteHeader,
    TdReport,
)
from donjon.keep.sim.tdx_hierarchy import Issued, make_crl

#: The simulated TD quoting enclave: Intel's ISVPRODID for the TD QE, a signer of its own.
QE_MRSIGNER = hashlib.sha256(b"donjon simulated TD quoting enclave signer").digest()
QE_MRENCLAVE = hashlib.sha256(b"donjon simulated TD quoting enclave").digest()
QE_ISVPRODID = 2
QE_ATTRIBUTES = bytes.fromhex("1500000000000000e700000000000000")
QE_AUTH_DATA = bytes(range(32))
COLLATERAL_LIFETIME = timedelta(days=30)


def _raw_signature(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_public(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]


@dataclass(frozen=True)
class SimPlatformTcb:
    """What the simulated platform runs: its PCK TCB, its TDX module, its QE."""

    sgx_components: tuple[int, ...]
    pcesvn: int
    tee_tcb_svn: bytes
    qe_isvsvn: int
    mrseam: bytes


def td_report(
    tcb: SimPlatformTcb,
    *,
    mrtd: bytes,
    report_data: bytes,
    td_attributes: int,
    xfam: bytes,
    rtmrs: tuple[bytes, bytes, bytes, bytes] = (bytes(48),) * 4,
) -> TdReport:
    return TdReport(
        tee_tcb_svn=tcb.tee_tcb_svn,
        mrseam=tcb.mrseam,
        mrsignerseam=bytes(48),  # Intel's TDX module: its TCB Info lists an all-zero signer
        seam_attributes=bytes(8),
        td_attributes=td_attributes.to_bytes(8, "little"),
        xfam=xfam,
        mrtd=mrtd,
        mrconfigid=bytes(48),
        mrowner=bytes(48),
        mrownerconfig=bytes(48),
        rtmr0=rtmrs[0],
        rtmr1=rtmrs[1],
        rtmr2=rtmrs[2],
        rtmr3=rtmrs[3],
        report_data=report_data,
    )


def sign_quote(
    body: TdReport,
    *,
    tcb: SimPlatformTcb,
    pck: Issued,
    attestation_key: ec.EllipticCurvePrivateKey,
    chain_pem: bytes,
) -> bytes:
    """A finished v4 TD quote over ``body``."""
    att = _raw_public(attestation_key)
    qe_report = EnclaveReport(
        cpusvn=bytes(tcb.sgx_components),
        miscselect=bytes(4),
        isv_ext_prod_id=bytes(16),
        attributes=QE_ATTRIBUTES,
        mrenclave=QE_MRENCLAVE,
        mrsigner=QE_MRSIGNER,
        config_id=bytes(64),
        isvprodid=QE_ISVPRODID,
        isvsvn=tcb.qe_isvsvn,
        config_svn=0,
        isv_family_id=bytes(16),
        report_data=hashlib.sha256(att + QE_AUTH_DATA).digest() + bytes(32),
    )
    raw_qe = qe_report.to_bytes()
    qe = QeCertificationData(
        qe_report=qe_report,
        qe_report_signature=_raw_signature(pck.key, raw_qe),
        qe_auth_data=QE_AUTH_DATA,
        certification=CertificationData(layout.CERT_PCK_CHAIN, chain_pem),
        qe_report_raw=raw_qe,
    )
    header = QuoteHeader(
        version=4,
        att_key_type=layout.KEY_ECDSA_P256,
        tee_type=layout.TEE_TDX,
        qe_svn=0,
        pce_svn=0,
        qe_vendor_id=layout.INTEL_QE_VENDOR_ID,
        user_data=bytes(20),
    )
    unsigned = Quote(header, body, bytes(64), att, qe)
    signature = _raw_signature(attestation_key, unsigned.signed_bytes())
    return Quote(header, body, signature, att, qe).to_bytes()


def _time(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _components(values: Any) -> list[dict[str, int]]:
    return [{"svn": int(v)} for v in values]


def tcb_info_json(
    tcb: SimPlatformTcb,
    *,
    fmspc: bytes,
    now: datetime,
    status: str,
    advisories: tuple[str, ...],
) -> bytes:
    """TCB Info v3 (TDX) whose first level is exactly this platform's, with ``status``."""
    svn = tcb.tee_tcb_svn
    lower = [max(v - 1, 0) for v in tcb.sgx_components]
    level = {
        "tcb": {
            "sgxtcbcomponents": _components(tcb.sgx_components),
            "pcesvn": tcb.pcesvn,
            "tdxtcbcomponents": _components([svn[0], 0, *svn[2:]]),
        },
        "tcbDate": _time(now - timedelta(days=90)),
        "tcbStatus": status,
        **({"advisoryIDs": list(advisories)} if advisories else {}),
    }
    older = {
        "tcb": {
            "sgxtcbcomponents": _components(lower),
            "pcesvn": max(tcb.pcesvn - 1, 0),
            "tdxtcbcomponents": _components([0] * 16),
        },
        "tcbDate": _time(now - timedelta(days=900)),
        "tcbStatus": "OutOfDate",
        "advisoryIDs": ["INTEL-SA-00000"],
    }
    module = {"mrsigner": "00" * 48, "attributes": "00" * 8, "attributesMask": "FF" * 8}
    body = {
        "id": "TDX",
        "version": 3,
        "issueDate": _time(now - timedelta(minutes=1)),
        "nextUpdate": _time(now + COLLATERAL_LIFETIME),
        "fmspc": fmspc.hex().upper(),
        "pceId": "0000",
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tdxModule": module,
        "tdxModuleIdentities": [
            {
                "id": f"TDX_{svn[1]:02X}",
                **module,
                "tcbLevels": [
                    {
                        "tcb": {"isvsvn": svn[0]},
                        "tcbDate": _time(now - timedelta(days=90)),
                        "tcbStatus": "UpToDate",
                    }
                ],
            }
        ],
        "tcbLevels": [level, older],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def qe_identity_json(tcb: SimPlatformTcb, *, now: datetime) -> bytes:
    body = {
        "id": "TD_QE",
        "version": 2,
        "issueDate": _time(now - timedelta(minutes=1)),
        "nextUpdate": _time(now + COLLATERAL_LIFETIME),
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": QE_MRSIGNER.hex().upper(),
        "isvprodid": QE_ISVPRODID,
        "tcbLevels": [
            {
                "tcb": {"isvsvn": tcb.qe_isvsvn},
                "tcbDate": _time(now - timedelta(days=90)),
                "tcbStatus": "UpToDate",
            }
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def collateral(
    tcb: SimPlatformTcb,
    *,
    root: Issued,
    pck_ca: Issued,
    tcb_signing: Issued,
    fmspc: bytes,
    now: datetime,
    status: str = "UpToDate",
    advisories: tuple[str, ...] = (),
) -> CollateralBundle:
    """What Intel PCS would serve for the simulated platform, freshly signed."""
    chain = (tcb_signing.cert, root.cert)
    tcb_body = tcb_info_json(tcb, fmspc=fmspc, now=now, status=status, advisories=advisories)
    qe_body = qe_identity_json(tcb, now=now)
    return CollateralBundle(
        tcb_info=Signed("tcb_info", tcb_body, _raw_signature(tcb_signing.key, tcb_body), chain),
        qe_identity=Signed("qe_identity", qe_body, _raw_signature(tcb_signing.key, qe_body), chain),
        root_crl=make_crl(root, now, COLLATERAL_LIFETIME),
        pck_crl=make_crl(pck_ca, now, COLLATERAL_LIFETIME),
        pck_crl_chain=(pck_ca.cert, root.cert),
        source="the simulated TEE",
    )
