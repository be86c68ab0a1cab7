"""Confidential main.wasm: AES-256-GCM under a key that only an attested Keep receives.

The registry (and the host) hold only ``nonce || ciphertext``. The Keep attests
with the plaintext's digest and the package's manifest digest in its claims,
asks its Steward for the key, and opens the module in memory; the plaintext is
then checked against the attested digest before it is compiled, and is never
written anywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from donjon.errors import DonjonError

if TYPE_CHECKING:
    from donjon.keep.sealed_config import SealedConfig

KEY_BYTES = 32
NONCE_BYTES = 12
_AAD = b"donjon sealed main.wasm v1\0"


class SealedModuleError(DonjonError):
    """A sealed main.wasm that does not open with its key, or opens to other bytes."""


def _aad(plain_sha256: bytes) -> bytes:
    return _AAD + plain_sha256


def seal(wasm: bytes, key: bytes | None = None) -> tuple[bytes, bytes]:
    """``(key, nonce || ciphertext)`` of ``wasm`` under a fresh (or given) 256-bit key."""
    key = key or secrets.token_bytes(KEY_BYTES)
    if len(key) != KEY_BYTES:
        raise ValueError("an AES-256-GCM key is 32 bytes")
    nonce = secrets.token_bytes(NONCE_BYTES)
    digest = hashlib.sha256(wasm).digest()
    return key, nonce + AESGCM(key).encrypt(nonce, wasm, _aad(digest))


@dataclass(frozen=True)
class SealedModule:
    """main.wasm as the registry holds it, with what the manifest says about it."""

    ciphertext: bytes = field(repr=False)
    #: SHA-256 of the plaintext (from the manifest, so covered by the manifest digest).
    plain_sha256: bytes
    #: The Steward secret that holds the key.
    key_secret: str
    #: The config's sealed part, opened with the same key (``keep/sealed_config.py``).
    config: SealedConfig | None = None

    def open(self, key: bytes) -> bytes:
        """The plaintext, only if it decrypts and hashes to the attested digest."""
        if len(key) != KEY_BYTES:
            raise SealedModuleError(
                f"secret {self.key_secret!r} is {len(key)} bytes, not a 32-byte AES-256 key"
            )
        if len(self.ciphertext) < NONCE_BYTES + 16:
            raise SealedModuleError("the sealed main.wasm is too short to hold a GCM message")
        nonce, body = self.ciphertext[:NONCE_BYTES], self.ciphertext[NONCE_BYTES:]
        try:
            plain = AESGCM(key).decrypt(nonce, body, _aad(self.plain_sha256))
        except InvalidTag:
            raise SealedModuleError(
                f"the sealed main.wasm does not open with the key in secret {self.key_secret!r} "
                "(wrong key, or the ciphertext was changed)"
            ) from None
        if hashlib.sha256(plain).digest() != self.plain_sha256:  # the AAD already binds it
            raise SealedModuleError("the opened main.wasm does not hash to the attested digest")
        return plain
