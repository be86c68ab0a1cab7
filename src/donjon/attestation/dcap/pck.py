"""The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1), parsed with pyasn1.

What the TCB algorithm needs comes from here: the platform's TCB (sixteen
CPUSVN component SVNs and the PCESVN), its PCE-ID and FMSPC. Layout (Intel
SGX PCK Certificate and CRL Profile)::

    SGXExtensions ::= SEQUENCE OF SEQUENCE { id OBJECT IDENTIFIER, value ANY }
      .1 PPID OCTET STRING (16)
      .2 TCB  SEQUENCE OF SEQUENCE { id, value }  -- .2.1-.2.16 INTEGER, .2.17 PCESVN
                                                  -- INTEGER, .2.18 CPUSVN OCTET STRING (16)
      .3 PCE-ID OCTET STRING (2)    .4 FMSPC OCTET STRING (6)    .5 SGX Type ENUMERATED
      .6 PlatformInstanceID OCTET STRING (16), .7 Configuration SEQUENCE { .7.1 dynamic
         platform, .7.2 cached keys, .7.3 SMT enabled: BOOLEAN }   -- Platform CA only

Parsing is strict: a missing required field, a duplicate, an unknown id or a
value of the wrong size is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, univ

from donjon.attestation.errors import MalformedEvidenceError

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_ARC = SGX_EXTENSION_OID
SGX_TYPES = {0: "Standard", 1: "Scalable", 2: "ScalableWithIntegrity"}


class _Item(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("id", univ.ObjectIdentifier()),
        namedtype.NamedType("value", univ.Any()),
    )


class _Items(univ.SequenceOf):
    componentType = _Item()


@dataclass(frozen=True)
class PckTcb:
    """The platform's TCB as the PCK certifies it."""

    components: tuple[int, ...]  # sixteen CPUSVN component SVNs
    pcesvn: int
    cpusvn: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "sgxtcbcomponents": list(self.components),
            "pcesvn": self.pcesvn,
            "cpusvn": self.cpusvn.hex(),
        }


@dataclass(frozen=True)
class PckExtensions:
    ppid: bytes
    tcb: PckTcb
    pceid: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None
    dynamic_platform: bool | None = None
    cached_keys: bool | None = None
    smt_enabled: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ppid": self.ppid.hex(),
            "tcb": self.tcb.to_dict(),
            "pceid": self.pceid.hex(),
            "fmspc": self.fmspc.hex(),
            "sgx_type": SGX_TYPES.get(self.sgx_type, str(self.sgx_type)),
            "platform_instance_id": None
            if self.platform_instance_id is None
            else self.platform_instance_id.hex(),
            "configuration": None
            if self.dynamic_platform is None
            else {
                "dynamic_platform": self.dynamic_platform,
                "cached_keys": self.cached_keys,
                "smt_enabled": self.smt_enabled,
            },
        }


def _decode(data: bytes, spec: Any, what: str) -> Any:
    try:
        value, rest = decoder.decode(data, asn1Spec=spec)
    except PyAsn1Error as exc:
        raise MalformedEvidenceError(f"PCK SGX extension: {what} is not valid DER") from exc
    if rest:
        raise MalformedEvidenceError(f"PCK SGX extension: trailing bytes after {what}")
    return value


def _items(data: bytes, arc: str, what: str) -> dict[int, bytes]:
    """``SEQUENCE OF {id, value}`` under ``arc``, by last arc number; duplicates refused."""
    out: dict[int, bytes] = {}
    for item in _decode(data, _Items(), what):
        oid = str(item["id"])
        parent, _, last = oid.rpartition(".")
        if parent != arc or not last.isdigit():
            raise MalformedEvidenceError(f"PCK SGX extension: unexpected {oid} in {what}")
        number = int(last)
        if number in out:
            raise MalformedEvidenceError(f"PCK SGX extension: {oid} appears twice")
        out[number] = bytes(item["value"])
    return out


def _octets(raw: bytes, size: int, what: str) -> bytes:
    value = bytes(_decode(raw, univ.OctetString(), what))
    if len(value) != size:
        raise MalformedEvidenceError(f"PCK SGX extension: {what} is {len(value)} bytes, not {size}")
    return value


def _integer(raw: bytes, what: str, high: int) -> int:
    value = int(_decode(raw, univ.Integer(), what))
    if not 0 <= value <= high:
        raise MalformedEvidenceError(f"PCK SGX extension: {what} = {value} is out of range")
    return value


def _boolean(raw: bytes, what: str) -> bool:
    return bool(_decode(raw, univ.Boolean(), what))


def _require(items: dict[int, bytes], numbers: range | tuple[int, ...], where: str) -> None:
    missing = [n for n in numbers if n not in items]
    if missing:
        raise MalformedEvidenceError(f"PCK SGX extension: {where} lacks .{missing[0]}")
    unknown = sorted(set(items) - set(numbers))
    if unknown:
        raise MalformedEvidenceError(f"PCK SGX extension: {where} has unknown .{unknown[0]}")


def parse_sgx_extension(der: bytes) -> PckExtensions:
    """The SGX extension's DER value (the extnValue's contents)."""
    top = _items(der, _ARC, "the extension")
    platform = 6 in top or 7 in top
    _require(top, (1, 2, 3, 4, 5, 6, 7) if platform else (1, 2, 3, 4, 5), "the extension")
    tcb_items = _items(top[2], f"{_ARC}.2", "TCB")
    _require(tcb_items, range(1, 19), "TCB")
    components = tuple(_integer(tcb_items[i], f"TCB component {i}", 255) for i in range(1, 17))
    tcb = PckTcb(
        components=components,
        pcesvn=_integer(tcb_items[17], "PCESVN", 0xFFFF),
        cpusvn=_octets(tcb_items[18], 16, "CPUSVN"),
    )
    sgx_type = int(_decode(top[5], univ.Enumerated(), "SGX type"))
    if sgx_type not in SGX_TYPES:
        raise MalformedEvidenceError(f"PCK SGX extension: unknown SGX type {sgx_type}")
    values: dict[str, Any] = {}
    if platform:
        values["platform_instance_id"] = _octets(top[6], 16, "PlatformInstanceID")
        config = _items(top[7], f"{_ARC}.7", "Configuration")
        for number, name in ((1, "dynamic_platform"), (2, "cached_keys"), (3, "smt_enabled")):
            if number in config:
                values[name] = _boolean(config[number], name)
        if set(config) - {1, 2, 3}:
            raise MalformedEvidenceError("PCK SGX extension: unknown Configuration item")
    return PckExtensions(
        ppid=_octets(top[1], 16, "PPID"),
        tcb=tcb,
        pceid=_octets(top[3], 2, "PCE-ID"),
        fmspc=_octets(top[4], 6, "FMSPC"),
        sgx_type=sgx_type,
        **values,
    )


def pck_extensions(cert: x509.Certificate) -> PckExtensions:
    """The SGX extension of a PCK certificate; refused when it is absent or malformed."""
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    except x509.ExtensionNotFound:
        raise MalformedEvidenceError(
            "the PCK certificate has no SGX extension (1.2.840.113741.1.13.1)"
        ) from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise MalformedEvidenceError("the PCK certificate's SGX extension has an unexpected form")
    return parse_sgx_extension(value.value)


def _item(oid: str, value: Any) -> _Item:
    item = _Item()
    item["id"] = univ.ObjectIdentifier(oid)
    item["value"] = univ.Any(encoder.encode(value))
    return item


def _sequence(items: list[_Item]) -> _Items:
    seq = _Items()
    for i, item in enumerate(items):
        seq[i] = item
    return seq


def encode_sgx_extension(ext: PckExtensions) -> bytes:
    """The inverse of :func:`parse_sgx_extension` (for the simulated TEE and tests)."""
    tcb = [_item(f"{_ARC}.2.{i + 1}", univ.Integer(v)) for i, v in enumerate(ext.tcb.components)]
    tcb.append(_item(f"{_ARC}.2.17", univ.Integer(ext.tcb.pcesvn)))
    tcb.append(_item(f"{_ARC}.2.18", univ.OctetString(ext.tcb.cpusvn)))
    items = [
        _item(f"{_ARC}.1", univ.OctetString(ext.ppid)),
        _item(f"{_ARC}.2", _sequence(tcb)),
        _item(f"{_ARC}.3", univ.OctetString(ext.pceid)),
        _item(f"{_ARC}.4", univ.OctetString(ext.fmspc)),
        _item(f"{_ARC}.5", univ.Enumerated(ext.sgx_type)),
    ]
    if ext.platform_instance_id is not None:
        items.append(_item(f"{_ARC}.6", univ.OctetString(ext.platform_instance_id)))
        config = [
            _item(f"{_ARC}.7.{n}", univ.Boolean(bool(value)))
            for n, value in ((1, ext.dynamic_platform), (2, ext.cached_keys), (3, ext.smt_enabled))
            if value is not None
        ]
        items.append(_item(f"{_ARC}.7", _sequence(config)))
    return bytes(encoder.encode(_sequence(items)))
