"""Intel's signed collateral: TCB Info (v3) and QE Identity (v2), and the bundle that carries them.

Both are JSON objects that Intel signs with the TCB Signing key: ECDSA P-256,
the raw ``r || s`` in hex, over the **exact bytes** of the object as served
(never re-serialised). Parsing is strict: a missing key, a wrong type or
size, an unknown key or status, or a version other than the one Donjon
implements is refused, naming the field.

:class:`CollateralBundle` is Phala ``dcap-qvl``'s ``QuoteCollateralV3`` JSON
layout (CRLs as hex DER, chains as PEM, signed objects as strings with their
signatures in hex): what ``--collateral FILE`` reads and what ``donjon attest
collateral fetch`` writes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation.errors import CollateralSignatureError, MalformedEvidenceError
from donjon.attestation.x509util import load_certificates, quiet_serials, touch_crl

#: TCB statuses of TCB Info levels, in Intel's words.
TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
#: Statuses of QE Identity and TDX module identity levels.
IDENTITY_STATUSES = ("UpToDate", "OutOfDate", "Revoked")
QE_IDS = ("QE", "QVE", "TD_QE")


class _Json:
    """Typed reads from a JSON object, each failure naming the object and the key."""

    def __init__(self, obj: Any, what: str) -> None:
        if not isinstance(obj, dict):
            raise MalformedEvidenceError(f"{what}: expected a JSON object")
        self.obj: dict[str, Any] = obj
        self.what = what

    def fail(self, key: str, why: str) -> MalformedEvidenceError:
        return MalformedEvidenceError(f"{self.what}: {key}: {why}")

    def only(self, required: set[str], optional: frozenset[str] | set[str] = frozenset()) -> None:
        missing = sorted(required - set(self.obj))
        if missing:
            raise self.fail(missing[0], "missing")
        unknown = sorted(set(self.obj) - required - optional)
        if unknown:
            raise self.fail(unknown[0], "unknown key")

    def string(self, key: str) -> str:
        value = self.obj.get(key)
        if not isinstance(value, str):
            raise self.fail(key, "must be a string")
        return value

    def integer(self, key: str, high: int = 2**32 - 1) -> int:
        value = self.obj.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
            raise self.fail(key, f"must be an integer 0..{high}")
        return value

    def hexbytes(self, key: str, size: int) -> bytes:
        text = self.string(key)
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise self.fail(key, "is not hex") from None
        if len(raw) != size:
            raise self.fail(key, f"is {len(raw)} bytes, expected {size}")
        return raw

    def time(self, key: str) -> datetime:
        text = self.string(key)
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(key, f"{text!r} is not an ISO 8601 time") from None
        if when.tzinfo is None:
            raise self.fail(key, "has no time zone")
        return when

    def status(self, key: str, allowed: Sequence[str]) -> str:
        value = self.string(key)
        if value not in allowed:
            raise self.fail(key, f"unknown status {value!r}")
        return value

    def advisories(self) -> tuple[str, ...]:
        value = self.obj.get("advisoryIDs", [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail("advisoryIDs", "must be a list of strings")
        return tuple(value)

    def array(self, key: str) -> list[Any]:
        value = self.obj.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail(key, "must be a non-empty array")
        return value

    def sub(self, key: str) -> _Json:
        return _Json(self.obj.get(key), f"{self.what}.{key}")


# --- TCB Info ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TcbLevel:
    sgx_components: tuple[int, ...]
    pcesvn: int
    tdx_components: tuple[int, ...] | None
    tcb_date: datetime
    status: str
    advisories: tuple[str, ...]


@dataclass(frozen=True)
class ModuleLevel:
    isvsvn: int
    tcb_date: datetime
    status: str
    advisories: tuple[str, ...]


@dataclass(frozen=True)
class TdxModuleIdentity:
    id: str  # TDX_01, TDX_03...
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    levels: tuple[ModuleLevel, ...]


@dataclass(frozen=True)
class TcbInfo:
    id: str  # "SGX" | "TDX"
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pceid: bytes
    tcb_type: int
    evaluation_number: int
    levels: tuple[TcbLevel, ...]
    #: TDX only: the TDX module's signer and attributes, and its identities by version.
    tdx_module: TdxModuleIdentity | None = None
    tdx_module_identities: tuple[TdxModuleIdentity, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "fmspc": self.fmspc.hex(),
            "pceid": self.pceid.hex(),
            "issue_date": self.issue_date.isoformat(),
            "next_update": self.next_update.isoformat(),
            "tcb_evaluation_data_number": self.evaluation_number,
            "levels": len(self.levels),
        }


def _components(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != 16:
        raise MalformedEvidenceError(f"{what}: must be an array of 16 components")
    out = []
    for i, item in enumerate(value):
        comp = _Json(item, f"{what}[{i}]")
        comp.only({"svn"}, {"category", "type"})
        out.append(comp.integer("svn", 255))
    return tuple(out)


def _module_levels(levels: list[Any], what: str) -> tuple[ModuleLevel, ...]:
    out = []
    for i, item in enumerate(levels):
        level = _Json(item, f"{what}[{i}]")
        level.only({"tcb", "tcbDate", "tcbStatus"}, {"advisoryIDs"})
        tcb = level.sub("tcb")
        tcb.only({"isvsvn"})
        out.append(
            ModuleLevel(
                isvsvn=tcb.integer("isvsvn", 0xFFFF),
                tcb_date=level.time("tcbDate"),
                status=level.status("tcbStatus", IDENTITY_STATUSES),
                advisories=level.advisories(),
            )
        )
    return tuple(out)


def _module(obj: _Json, *, with_id: bool) -> TdxModuleIdentity:
    keys = {"mrsigner", "attributes", "attributesMask"}
    if with_id:
        obj.only(keys | {"id", "tcbLevels"})
    else:
        obj.only(keys)
    return TdxModuleIdentity(
        id=obj.string("id") if with_id else "",
        mrsigner=obj.hexbytes("mrsigner", 48),
        attributes=obj.hexbytes("attributes", 8),
        attributes_mask=obj.hexbytes("attributesMask", 8),
        levels=_module_levels(obj.array("tcbLevels"), f"{obj.what}.tcbLevels") if with_id else (),
    )


def parse_tcb_info(body: bytes) -> TcbInfo:
    """The ``tcbInfo`` object (its exact signed bytes)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvidenceError(f"TCB Info is not JSON ({exc})") from None
    obj = _Json(doc, "TCB Info")
    version = obj.integer("version")
    if version != 3:
        raise MalformedEvidenceError(
            f"TCB Info version {version} is not supported (Intel PCS v4 serves version 3)"
        )
    tee = obj.string("id")
    if tee not in ("SGX", "TDX"):
        raise MalformedEvidenceError(f"TCB Info id {tee!r} is neither SGX nor TDX")
    common = {
        "id", "version", "issueDate", "nextUpdate", "fmspc", "pceId", "tcbType",
        "tcbEvaluationDataNumber", "tcbLevels",
    }  # fmt: skip
    obj.only(common | ({"tdxModule"} if tee == "TDX" else set()), {"tdxModuleIdentities"})
    if tee == "SGX" and "tdxModuleIdentities" in obj.obj:
        raise obj.fail("tdxModuleIdentities", "is for TDX TCB Info only")
    tcb_type = obj.integer("tcbType")
    if tcb_type != 0:
        raise obj.fail("tcbType", f"{tcb_type} is not supported (only type 0 is defined)")
    levels = []
    for i, item in enumerate(obj.array("tcbLevels")):
        level = _Json(item, f"TCB Info.tcbLevels[{i}]")
        level.only({"tcb", "tcbDate", "tcbStatus"}, {"advisoryIDs"})
        tcb = level.sub("tcb")
        tcb.only({"sgxtcbcomponents", "pcesvn"} | ({"tdxtcbcomponents"} if tee == "TDX" else set()))
        levels.append(
            TcbLevel(
                sgx_components=_components(
                    tcb.obj["sgxtcbcomponents"], f"{tcb.what}.sgxtcbcomponents"
                ),
                pcesvn=tcb.integer("pcesvn", 0xFFFF),
                tdx_components=_components(
                    tcb.obj["tdxtcbcomponents"], f"{tcb.what}.tdxtcbcomponents"
                )
                if tee == "TDX"
                else None,
                tcb_date=level.time("tcbDate"),
                status=level.status("tcbStatus", TCB_STATUSES),
                advisories=level.advisories(),
            )
        )
    module = None
    identities: tuple[TdxModuleIdentity, ...] = ()
    if tee == "TDX":
        module = _module(obj.sub("tdxModule"), with_id=False)
        if "tdxModuleIdentities" in obj.obj:
            identities = tuple(
                _module(_Json(item, f"TCB Info.tdxModuleIdentities[{i}]"), with_id=True)
                for i, item in enumerate(obj.array("tdxModuleIdentities"))
            )
    return TcbInfo(
        id=tee,
        version=version,
        issue_date=obj.time("issueDate"),
        next_update=obj.time("nextUpdate"),
        fmspc=obj.hexbytes("fmspc", 6),
        pceid=obj.hexbytes("pceId", 2),
        tcb_type=tcb_type,
        evaluation_number=obj.integer("tcbEvaluationDataNumber"),
        levels=tuple(levels),
        tdx_module=module,
        tdx_module_identities=identities,
    )


# --- QE Identity ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QeIdentity:
    id: str  # "QE" (SGX), "TD_QE" (TDX), "QVE"
    version: int
    issue_date: datetime
    next_update: datetime
    evaluation_number: int
    miscselect: bytes
    miscselect_mask: bytes
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    levels: tuple[ModuleLevel, ...]

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "issue_date": self.issue_date.isoformat(),
            "next_update": self.next_update.isoformat(),
            "tcb_evaluation_data_number": self.evaluation_number,
        }


def parse_qe_identity(body: bytes) -> QeIdentity:
    """The ``enclaveIdentity`` object (its exact signed bytes)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvidenceError(f"QE Identity is not JSON ({exc})") from None
    obj = _Json(doc, "QE Identity")
    version = obj.integer("version")
    if version != 2:
        raise MalformedEvidenceError(f"QE Identity version {version} is not supported (only 2)")
    obj.only({
        "id", "version", "issueDate", "nextUpdate", "tcbEvaluationDataNumber", "miscselect",
        "miscselectMask", "attributes", "attributesMask", "mrsigner", "isvprodid", "tcbLevels",
    })  # fmt: skip
    ident = obj.string("id")
    if ident not in QE_IDS:
        raise obj.fail("id", f"{ident!r} is not QE, QVE or TD_QE")
    return QeIdentity(
        id=ident,
        version=version,
        issue_date=obj.time("issueDate"),
        next_update=obj.time("nextUpdate"),
        evaluation_number=obj.integer("tcbEvaluationDataNumber"),
        miscselect=obj.hexbytes("miscselect", 4),
        miscselect_mask=obj.hexbytes("miscselectMask", 4),
        attributes=obj.hexbytes("attributes", 16),
        attributes_mask=obj.hexbytes("attributesMask", 16),
        mrsigner=obj.hexbytes("mrsigner", 32),
        isvprodid=obj.integer("isvprodid", 0xFFFF),
        levels=_module_levels(obj.array("tcbLevels"), "QE Identity.tcbLevels"),
    )


# --- signed objects -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    """A signed collateral object as served: its exact bytes, signature and issuer chain."""

    kind: str  # "tcb_info" | "qe_identity"
    body: bytes
    signature: bytes
    chain: tuple[x509.Certificate, ...]
    source: str = ""

    @cached_property
    def digest(self) -> str:
        """Identifies body, signature and issuer chain (the memo key of its verification)."""
        digest = hashlib.sha256(self.body + b"\0" + self.signature)
        for cert in self.chain:
            digest.update(cert.tbs_certificate_bytes)
        return digest.hexdigest()


def verify_body_signature(signed: Signed, signer: x509.Certificate, what: str) -> None:
    """ECDSA P-256/SHA-256 over the exact bytes; the signature is raw ``r || s``."""
    if len(signed.signature) != 64:
        raise CollateralSignatureError(
            f"{what}: signature is {len(signed.signature)} bytes, expected 64 (r || s)"
        )
    key = signer.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CollateralSignatureError(f"{what}: signer key is not ECDSA")
    r = int.from_bytes(signed.signature[:32], "big")
    s = int.from_bytes(signed.signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signed.body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CollateralSignatureError(
            f"{what} is not signed by the TCB Signing key of its chain"
        ) from None


# --- the bundle -------------------------------------------------------------------------------

BUNDLE_KEYS = frozenset(
    {
        "pck_crl_issuer_chain",
        "root_ca_crl",
        "pck_crl",
        "tcb_info_issuer_chain",
        "tcb_info",
        "tcb_info_signature",
        "qe_identity_issuer_chain",
        "qe_identity",
        "qe_identity_signature",
    }
)


def load_crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    """A CRL as DER, PEM, or DER in hex (PCCS and dcap-qvl bundles use hex)."""
    text = data.strip()
    raw = data
    if text[:1] in b"0123456789abcdefABCDEF" and not text.startswith(b"-----"):
        try:
            raw = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raw = data
    with quiet_serials():
        try:
            if raw.lstrip().startswith(b"-----BEGIN"):
                crl = x509.load_pem_x509_crl(raw)
            else:
                crl = x509.load_der_x509_crl(raw)
        except ValueError as exc:
            raise MalformedEvidenceError(f"{what}: not a CRL") from exc
    return touch_crl(crl, what)


def crl_der(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(Encoding.DER)


def chain_pem(certs: Sequence[x509.Certificate]) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


@dataclass(frozen=True)
class CollateralBundle:
    """Everything an offline check of one quote needs besides the quote (QuoteCollateralV3)."""

    tcb_info: Signed
    qe_identity: Signed
    root_crl: x509.CertificateRevocationList
    pck_crl: x509.CertificateRevocationList
    #: The PCK CRL's issuer chain: the PCK CA and the root.
    pck_crl_chain: tuple[x509.Certificate, ...]
    source: str = ""

    @property
    def crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        return (self.root_crl, self.pck_crl)

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        return (*self.pck_crl_chain, *self.tcb_info.chain, *self.qe_identity.chain)

    @property
    def next_update(self) -> datetime | None:
        """The earliest nextUpdate of its parts: when a cached copy must be refreshed."""
        dates = [c.next_update_utc for c in self.crls if c.next_update_utc is not None]
        dates += [parse_tcb_info(self.tcb_info.body).next_update]
        dates += [parse_qe_identity(self.qe_identity.body).next_update]
        return min(dates) if dates else None

    def to_json(self) -> dict[str, Any]:
        return {
            "pck_crl_issuer_chain": chain_pem(self.pck_crl_chain),
            "root_ca_crl": crl_der(self.root_crl).hex(),
            "pck_crl": crl_der(self.pck_crl).hex(),
            "tcb_info_issuer_chain": chain_pem(self.tcb_info.chain),
            "tcb_info": self.tcb_info.body.decode(),
            "tcb_info_signature": self.tcb_info.signature.hex(),
            "qe_identity_issuer_chain": chain_pem(self.qe_identity.chain),
            "qe_identity": self.qe_identity.body.decode(),
            "qe_identity_signature": self.qe_identity.signature.hex(),
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1) + "\n").encode()


def _signed(obj: _Json, kind: str, body_key: str, sig_key: str, chain_key: str, src: str) -> Signed:
    body = obj.string(body_key).encode()
    try:
        signature = bytes.fromhex(obj.string(sig_key))
    except ValueError:
        raise obj.fail(sig_key, "is not hex") from None
    chain = tuple(load_certificates(obj.string(chain_key).encode(), what=f"{src}: {chain_key}"))
    return Signed(kind, body, signature, chain, src)


def parse_bundle(data: bytes, source: str) -> CollateralBundle:
    """A QuoteCollateralV3 JSON document (dcap-qvl's layout), strictly."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvidenceError(f"{source}: not JSON ({exc})") from None
    obj = _Json(doc, source)
    obj.only(set(BUNDLE_KEYS))
    tcb = _signed(
        obj, "tcb_info", "tcb_info", "tcb_info_signature", "tcb_info_issuer_chain", source
    )
    qe = _signed(
        obj,
        "qe_identity",
        "qe_identity",
        "qe_identity_signature",
        "qe_identity_issuer_chain",
        source,
    )
    root_crl = load_crl(obj.string("root_ca_crl").encode(), f"{source}: root_ca_crl")
    pck_crl = load_crl(obj.string("pck_crl").encode(), f"{source}: pck_crl")
    certs = tuple(
        load_certificates(
            obj.string("pck_crl_issuer_chain").encode(), what=f"{source}: pck_crl_issuer_chain"
        )
    )
    return CollateralBundle(tcb, qe, root_crl, pck_crl, certs, source)


def is_bundle(doc: Any) -> bool:
    return isinstance(doc, dict) and set(doc) == BUNDLE_KEYS


def signed_from_pcs(
    data: bytes, chain: Sequence[x509.Certificate], kind: str, source: str
) -> Signed:
    """A PCS response body ``{"tcbInfo": ..., "signature": ...}`` (or ``enclaveIdentity``),
    keeping the exact bytes of the signed object as they appear in the body."""
    key = "tcbInfo" if kind == "tcb_info" else "enclaveIdentity"
    body = _raw_member(data, key, source)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvidenceError(f"{source}: not JSON ({exc})") from None
    obj = _Json(doc, source)
    obj.only({key, "signature"})
    try:
        signature = bytes.fromhex(obj.string("signature"))
    except ValueError:
        raise obj.fail("signature", "is not hex") from None
    return Signed(kind, body, signature, tuple(chain), source)


def _raw_member(data: bytes, key: str, source: str) -> bytes:
    """The exact bytes of the JSON object value of top-level ``key`` (Intel signs those)."""
    text = data.decode("utf-8", "strict") if isinstance(data, bytes) else data
    decoder = json.JSONDecoder()
    marker = f'"{key}"'
    start = text.find(marker)
    if start < 0:
        raise MalformedEvidenceError(f"{source}: no {key!r} member")
    colon = text.index(":", start + len(marker))
    begin = colon + 1
    while text[begin] in " \t\r\n":
        begin += 1
    try:
        _, end = decoder.raw_decode(text, begin)
    except json.JSONDecodeError as exc:
        raise MalformedEvidenceError(f"{source}: {key} is not JSON ({exc})") from None
    return text[begin:end].encode()
