"""Challenge nonces that the Steward can check without having stored them.

A nonce is ``random (32) || expiry (8, big-endian Unix seconds) || MAC (16)``:
56 bytes, the MAC being HMAC-SHA-256 under a key kept in the audit store (so
every Steward sharing the store accepts the others' nonces), cut to 128 bits.
Handing one out writes nothing, so a flood of ``POST /v1/challenge`` cannot
fill the database; answering one writes its digest once, in the same
transaction as the certificate's audit row, whose primary key makes a second
use fail on every replica.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

RANDOM_BYTES = 32
MAC_BYTES = 16
NONCE_BYTES = RANDOM_BYTES + 8 + MAC_BYTES


@dataclass(frozen=True)
class Challenge:
    nonce: bytes
    expires_at: datetime


def mint(key: bytes, expires_at: datetime) -> Challenge:
    """A fresh nonce that this store's Stewards will accept until ``expires_at``."""
    body = secrets.token_bytes(RANDOM_BYTES) + struct.pack(">Q", int(expires_at.timestamp()))
    return Challenge(body + _mac(key, body), _when(body))


def check(key: bytes, nonce: bytes, now: datetime) -> tuple[str, datetime | None]:
    """("ok", expiry), ("unknown", None) for a nonce this store never minted, or ("expired", ...).

    The store still has to say whether it was used (see ``AuditStore.record_issued``).
    """
    if len(nonce) != NONCE_BYTES:
        return "unknown", None
    body, mac = nonce[:-MAC_BYTES], nonce[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, body)):
        return "unknown", None
    expires = _when(body)
    return ("ok" if now < expires else "expired"), expires


def digest(nonce: bytes) -> str:
    return hashlib.sha256(nonce).hexdigest()


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, b"donjon-challenge-v1\x00" + body, hashlib.sha256).digest()[:MAC_BYTES]


def _when(body: bytes) -> datetime:
    (seconds,) = struct.unpack(">Q", body[RANDOM_BYTES : RANDOM_BYTES + 8])
    return datetime.fromtimestamp(seconds, UTC)
