"""The sealed part of a confidential package's config: AES-256-GCM, opened only in the Keep.

``donjon package push --encrypt`` moves the workload's own inputs (``args`` and
the ``[env]`` values written in the config) out of the clear config layer into
this one (``keep/config_split.py`` decides what moves). The layer is
``nonce || AES-256-GCM(subkey, blind || TOML)``:

- ``subkey`` is HKDF-SHA256 of the package key with its own label, so the
  package key never encrypts two kinds of content under one AES key;
- ``blind`` is 32 random bytes, so that the plaintext digest the manifest
  carries is no oracle for guessing a short value (``args = ["hunter2"]``);
- the associated data names this part and its format version, the plaintext
  digest, the package's main.wasm digest and the clear config's digest: a sealed
  main.wasm never opens as a config (nor the reverse), and this part never opens
  beside another package's module or clear config.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from donjon.errors import DonjonError
from donjon.keep.sealed import KEY_BYTES, NONCE_BYTES

VERSION = 1
BLIND_BYTES = 32
_LABEL = b"donjon sealed keep-config v1\0"
_TAG_BYTES = 16


class SealedConfigError(DonjonError):
    """A sealed config part that does not open with the package key, or opens to other bytes."""


def _subkey(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_LABEL).derive(key)


def _aad(plain_sha256: bytes, wasm_sha256: bytes, clear_sha256: bytes | None) -> bytes:
    return _LABEL + plain_sha256 + wasm_sha256 + (clear_sha256 or bytes(32))


def seal(
    key: bytes, toml: bytes, *, wasm_sha256: bytes, clear_sha256: bytes | None
) -> tuple[bytes, bytes]:
    """``(nonce || ciphertext, SHA-256 of the blinded plaintext)`` under the package key."""
    if len(key) != KEY_BYTES:
        raise ValueError("an AES-256-GCM key is 32 bytes")
    plain = secrets.token_bytes(BLIND_BYTES) + toml
    digest = hashlib.sha256(plain).digest()
    nonce = secrets.token_bytes(NONCE_BYTES)
    aad = _aad(digest, wasm_sha256, clear_sha256)
    return nonce + AESGCM(_subkey(key)).encrypt(nonce, plain, aad), digest


@dataclass(frozen=True)
class SealedConfig:
    """The sealed config layer as the registry holds it, with what the manifest says of it."""

    ciphertext: bytes = field(repr=False)
    #: SHA-256 of ``blind || TOML`` (a manifest annotation, so covered by the manifest digest).
    plain_sha256: bytes
    #: The package's main.wasm and clear config layer (None: no clear layer), bound as AAD.
    wasm_sha256: bytes
    clear_sha256: bytes | None

    def open(self, key: bytes) -> bytes:
        """The TOML of the sealed part, only if it decrypts and hashes to the manifest's digest."""
        if len(key) != KEY_BYTES:
            raise SealedConfigError(f"the package key is {len(key)} bytes, not 32")
        if len(self.ciphertext) < NONCE_BYTES + BLIND_BYTES + _TAG_BYTES:
            raise SealedConfigError("the sealed config layer is too short to hold a sealed part")
        nonce, body = self.ciphertext[:NONCE_BYTES], self.ciphertext[NONCE_BYTES:]
        aad = _aad(self.plain_sha256, self.wasm_sha256, self.clear_sha256)
        try:
            plain = AESGCM(_subkey(key)).decrypt(nonce, body, aad)
        except InvalidTag:
            raise SealedConfigError(
                "the sealed config layer does not open with the package key (wrong key, a "
                "changed ciphertext, or a layer of another package or kind)"
            ) from None
        if hashlib.sha256(plain).digest() != self.plain_sha256:  # the AAD already binds it
            raise SealedConfigError("the opened config part does not hash to the manifest's digest")
        return plain[BLIND_BYTES:]
