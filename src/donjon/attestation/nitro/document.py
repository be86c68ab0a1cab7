"""The AWS Nitro Enclaves attestation document, as the Nitro Security Module (NSM) signs it.

An untagged COSE_Sign1 (ES384) whose payload is a CBOR map (AWS, "Nitro
Enclaves attestation process", and the NSM API)::

    AttestationDocument = {
        module_id:    text,                 ; the enclave's id
        digest:       "SHA384",
        timestamp:    uint,                 ; milliseconds since the Unix epoch
        pcrs:         { + uint => bstr },   ; 0..31, 48 bytes each (SHA-384)
        certificate:  bstr,                 ; DER leaf that signs this document
        cabundle:     [ + bstr ],           ; DER, root first, then down to the leaf's issuer
        ? public_key: bstr / null,          ; at most 1024 bytes
        ? user_data:  bstr / null,          ; at most 512 bytes
        ? nonce:      bstr / null }         ; at most 512 bytes

Parsing is strict: an unknown key, a value of the wrong type or size, or a
digest other than SHA384 is refused. The signature is not checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from donjon.attestation.cose import CBOR_MAPS, Sign1, decode_sign1, loads_strict
from donjon.attestation.errors import MalformedEvidenceError, UnsupportedVersionError

#: NSM's response buffer is 12 KiB; anything much larger is not a document.
MAX_DOCUMENT_SIZE = 16 * 1024
MAX_CERT_SIZE = 1024
MAX_PUBLIC_KEY = 1024
MAX_USER_DATA = 512
MAX_NONCE = 512
PCR_COUNT = 32
DIGEST = "SHA384"
PCR_SIZE = 48  # SHA-384
_KEYS = frozenset(
    {
        "module_id",
        "digest",
        "timestamp",
        "pcrs",
        "certificate",
        "cabundle",
        "public_key",
        "user_data",
        "nonce",
    }
)


@dataclass(frozen=True)
class NitroDocument:
    sign1: Sign1
    module_id: str
    digest: str
    timestamp_ms: int
    pcrs: Mapping[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None

    @property
    def timestamp(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def to_dict(self) -> dict[str, Any]:
        def hexed(value: bytes | None) -> str | None:
            return None if value is None else value.hex()

        return {
            "algorithm": self.sign1.algorithm.name,
            "module_id": self.module_id,
            "digest": self.digest,
            "timestamp_ms": self.timestamp_ms,
            "timestamp": self.timestamp.isoformat(),
            "pcrs": {str(index): value.hex() for index, value in sorted(self.pcrs.items())},
            "certificate": self.certificate.hex(),
            "cabundle": [cert.hex() for cert in self.cabundle],
            "public_key": hexed(self.public_key),
            "user_data": hexed(self.user_data),
            "nonce": hexed(self.nonce),
        }


def looks_like_document(data: bytes) -> bool:
    """Cheap recognition: a CBOR array of 4 (optionally tag 18) whose payload names module_id."""
    head = data[1:] if data[:1] == b"\xd2" else data
    return len(data) > 64 and head[:1] == b"\x84" and b"module_id" in data[:512]


def parse_document(data: bytes) -> NitroDocument:
    if len(data) > MAX_DOCUMENT_SIZE:
        raise MalformedEvidenceError(
            f"Nitro document: {len(data)} bytes is larger than {MAX_DOCUMENT_SIZE}"
        )
    sign1 = decode_sign1(loads_strict(data, "Nitro document"), "Nitro document", tagged=None)
    doc = loads_strict(sign1.payload, "Nitro document payload")
    if not isinstance(doc, CBOR_MAPS):
        raise MalformedEvidenceError("Nitro document: the payload must be a map")
    unknown = sorted(str(k) for k in doc if k not in _KEYS)
    if unknown:
        raise MalformedEvidenceError(f"Nitro document: unknown field(s) {', '.join(unknown)}")
    for key in ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"):
        if key not in doc:
            raise MalformedEvidenceError(f"Nitro document: mandatory field {key} is missing")
    module_id = doc["module_id"]
    if not isinstance(module_id, str) or not module_id:
        raise MalformedEvidenceError("Nitro document: module_id must be non-empty text")
    if doc["digest"] != DIGEST:
        raise UnsupportedVersionError(f"Nitro document: digest {doc['digest']!r} is not {DIGEST}")
    timestamp = doc["timestamp"]
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or not 0 < timestamp < 2**63:
        raise MalformedEvidenceError("Nitro document: timestamp must be a positive integer (ms)")
    return NitroDocument(
        sign1=sign1,
        module_id=module_id,
        digest=DIGEST,
        timestamp_ms=timestamp,
        pcrs=_pcrs(doc["pcrs"]),
        certificate=_bstr(doc["certificate"], "certificate", 1, MAX_CERT_SIZE),
        cabundle=_cabundle(doc["cabundle"]),
        public_key=_optional(doc, "public_key", MAX_PUBLIC_KEY),
        user_data=_optional(doc, "user_data", MAX_USER_DATA),
        nonce=_optional(doc, "nonce", MAX_NONCE),
    )


def _bstr(value: Any, key: str, low: int, high: int) -> bytes:
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        raise MalformedEvidenceError(
            f"Nitro document: {key} must be a byte string of {low}..{high} bytes"
        )
    return value


def _optional(doc: Mapping[str, Any], key: str, high: int) -> bytes | None:
    value = doc.get(key)
    return None if value is None else _bstr(value, key, 0, high)


def _pcrs(value: Any) -> dict[int, bytes]:
    if not isinstance(value, CBOR_MAPS) or not 1 <= len(value) <= PCR_COUNT:
        raise MalformedEvidenceError(f"Nitro document: pcrs must map 1..{PCR_COUNT} indexes")
    out: dict[int, bytes] = {}
    for index, pcr in value.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < PCR_COUNT:
            raise MalformedEvidenceError(f"Nitro document: PCR index {index!r} is not 0..31")
        if not isinstance(pcr, bytes) or len(pcr) != PCR_SIZE:
            raise MalformedEvidenceError(
                f"Nitro document: PCR{index} must be {PCR_SIZE} bytes (SHA-384)"
            )
        out[index] = pcr
    return out


def _cabundle(value: Any) -> tuple[bytes, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise MalformedEvidenceError("Nitro document: cabundle must be a non-empty array")
    return tuple(
        _bstr(cert, f"cabundle[{index}]", 1, MAX_CERT_SIZE) for index, cert in enumerate(value)
    )
