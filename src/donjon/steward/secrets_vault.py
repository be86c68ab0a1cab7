"""Envelope encryption of secrets at rest: a data key per version, wrapped by the KEK.

Each secret version is encrypted with its own random AES-256-GCM data key
(DEK); the DEK is stored wrapped by the key-encryption key (KEK), which never
enters the database. The KEK comes from a 0600 file or ``$DONJON_STEWARD_KEK``
(64 hex digits or base64 of 32 bytes). Rotating the KEK rewraps every DEK
(``donjon steward secrets rewrap``); values are never decrypted to do it. Both
ciphertexts are bound to the secret's name and version (AES-GCM associated
data), so a row copied under another name or version does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from donjon.errors import UsageError
from donjon.steward.errors import StewardError
from donjon.steward.statedir import check_private

KEK_ENV = "DONJON_STEWARD_KEK"
_NONCE = 12


class KekError(UsageError):
    """A key-encryption key that is missing, unreadable, too open or malformed."""


class SecretUnavailable(StewardError):
    """A stored secret that does not open: wrapped under another KEK, or altered."""

    status = 503
    code = "secret-unavailable"


@dataclass(frozen=True)
class Kek:
    key: bytes = field(repr=False)

    @property
    def kek_id(self) -> str:
        """A public name of the KEK (not enough to guess it): first 16 hex of SHA-256."""
        return hashlib.sha256(b"donjon kek id\0" + self.key).hexdigest()[:16]


def parse_kek(text: str, where: str) -> Kek:
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise KekError(f"{where}: a KEK is 32 bytes, as 64 hex digits or base64")
    return Kek(key)


def load_kek(path: Path | None, env: dict[str, str] | None = None) -> Kek | None:
    """The KEK from ``path`` (must be 0600) or ``$DONJON_STEWARD_KEK``; None: no secrets."""
    if path is not None:
        check_private(path, "KEK file")
        try:
            return parse_kek(path.read_text(), str(path))
        except OSError as exc:
            raise KekError(f"cannot read the KEK file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise KekError(f"{path}: a KEK is 64 hex digits or base64 text") from None
    value = (os.environ if env is None else env).get(KEK_ENV, "")
    return parse_kek(value, f"${KEK_ENV}") if value.strip() else None


def new_kek_text() -> str:
    return secrets.token_bytes(32).hex()


def _aad(kind: str, name: str, version: int) -> bytes:
    return f"donjon secret {kind}\0{name}\0{version}".encode()


@dataclass(frozen=True)
class Sealed:
    kek_id: str
    wrapped_dek: bytes
    ciphertext: bytes


def seal(kek: Kek, name: str, version: int, value: bytes) -> Sealed:
    dek = secrets.token_bytes(32)
    nonce = secrets.token_bytes(_NONCE)
    body = nonce + AESGCM(dek).encrypt(nonce, value, _aad("value", name, version))
    return Sealed(kek.kek_id, wrap(kek, name, version, dek), body)


def wrap(kek: Kek, name: str, version: int, dek: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(kek.key).encrypt(nonce, dek, _aad("dek", name, version))


def unwrap(kek: Kek, name: str, version: int, sealed: Sealed) -> bytes:
    if sealed.kek_id != kek.kek_id:
        raise SecretUnavailable(
            f"secret {name!r} version {version} is wrapped by KEK {sealed.kek_id}, and this "
            f"Steward has KEK {kek.kek_id}: rewrap the store after a KEK rotation",
            check="secret.kek",
        )
    try:
        return AESGCM(kek.key).decrypt(
            sealed.wrapped_dek[:_NONCE], sealed.wrapped_dek[_NONCE:], _aad("dek", name, version)
        )
    except InvalidTag:
        raise SecretUnavailable(
            f"secret {name!r} version {version}: its data key does not unwrap (altered row?)",
            check="secret.integrity",
        ) from None


def open_value(kek: Kek, name: str, version: int, sealed: Sealed) -> bytes:
    dek = unwrap(kek, name, version, sealed)
    try:
        return AESGCM(dek).decrypt(
            sealed.ciphertext[:_NONCE], sealed.ciphertext[_NONCE:], _aad("value", name, version)
        )
    except InvalidTag:
        raise SecretUnavailable(
            f"secret {name!r} version {version}: the value does not decrypt (altered row?)",
            check="secret.integrity",
        ) from None


def rewrap(old: Kek, new: Kek, name: str, version: int, sealed: Sealed) -> Sealed:
    dek = unwrap(old, name, version, sealed)
    return Sealed(new.kek_id, wrap(new, name, version, dek), sealed.ciphertext)
