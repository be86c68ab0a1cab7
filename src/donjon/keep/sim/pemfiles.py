"""The simulator's key and certificate files: PEM, read with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from donjon.keep.sim.errors import SimStateCorrupt


def private_key_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (a simulator's keys protect nothing)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_pem_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise SimStateCorrupt(f"{path}: missing (run `donjon sim reset` then `init`)") from None
    except (OSError, ValueError) as exc:
        raise SimStateCorrupt(f"{path}: not a PEM certificate: {exc}") from None


def load_pem_key(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SimStateCorrupt(f"{path}: missing (run `donjon sim reset` then `init`)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise SimStateCorrupt(f"{path}: not a PEM private key: {exc}") from None
