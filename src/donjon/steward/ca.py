"""The Steward's certificate authority: create, store and load its key and certificate.

The CA key is an ECDSA key (P-256 or P-384): a PKCS#8 PEM file written with
mode 0600 through an atomic rename, or a key on a PKCS#11 token named by an
RFC 7512 URI (``pkcs11:token=...;object=...``), which never leaves the token.
Loading checks that the key and the certificate belong together, so a Steward
never signs with a stranger's key.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from donjon.atomicfile import write_bytes
from donjon.attestation.certprofile import key_usage, parse_certificate, signature_hash
from donjon.errors import plain
from donjon.steward.errors import CAError
from donjon.steward.pkcs11uri import is_pkcs11_uri, parse_pkcs11_uri

CURVES: dict[str, ec.EllipticCurve] = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1()}
CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
DEFAULT_CA_LIFETIME = timedelta(days=3650)


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def hash_algorithm(self) -> hashes.SHA256 | hashes.SHA384:
        return signature_hash(self.key)

    @classmethod
    def create(
        cls,
        *,
        name: str = "Donjon Steward CA",
        curve: str = "p384",
        now: datetime,
        lifetime: timedelta = DEFAULT_CA_LIFETIME,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> CertificateAuthority:
        """A self-signed CA that may only sign end-entity certificates (pathlen 0).

        ``key`` is an existing key (a token's); by default a new one on ``curve``.
        """
        if key is None:
            try:
                key = ec.generate_private_key(CURVES[curve])
            except KeyError:
                raise CAError(
                    f"unknown CA curve {curve!r}: use one of {', '.join(CURVES)}"
                ) from None
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, signature_hash(key))
        )
        return cls(certificate=cert, key=key)

    def save(self, directory: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
        """Write ``ca.pem`` and ``ca.key`` (0600) into ``directory``; never clobber a CA."""
        return self.save_to(directory / CA_CERT_NAME, directory / CA_KEY_NAME, overwrite=overwrite)

    def save_to(
        self, cert_path: Path, key_path: Path, *, overwrite: bool = False
    ) -> tuple[Path, Path]:
        """Write the key (mode 0600) then the certificate, each atomically."""
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_bytes(key_path, key_pem, mode=0o600, overwrite=overwrite)
        write_bytes(cert_path, self.certificate_pem, mode=0o644, overwrite=overwrite)
        return cert_path, key_path

    def save_certificate(self, cert_path: Path, *, overwrite: bool = False) -> Path:
        """Write only the certificate (the key stays where it is, e.g. on a token)."""
        write_bytes(cert_path, self.certificate_pem, mode=0o644, overwrite=overwrite)
        return cert_path

    @property
    def on_token(self) -> bool:
        return hasattr(self.key, "probe")

    def probe(self) -> None:
        """Readiness: a token-held key must still sign (a file key is always loaded)."""
        probe = getattr(self.key, "probe", None)
        if probe is not None:
            probe()

    @classmethod
    def load(cls, cert_path: Path, key_path: Path | str) -> CertificateAuthority:
        """Load and cross-check a CA; a key readable by others is refused.

        ``key_path`` is a file, or a ``pkcs11:`` URI of a key on a token.
        """
        cert = _load_certificate(cert_path)
        key = load_ca_key(key_path)
        if cert.public_key() != key.public_key():
            raise CAError(f"CA key {_shown(key_path)} does not match the certificate {cert_path}")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            raise CAError(f"CA certificate {cert_path} has no basicConstraints") from None
        if not constraints.ca:
            raise CAError(f"certificate {cert_path} is not a CA (basicConstraints ca=false)")
        return cls(certificate=cert, key=key)


def _shown(key: Path | str) -> str:
    if isinstance(key, str) and is_pkcs11_uri(key):
        return parse_pkcs11_uri(key).redacted
    return str(key)


def load_ca_key(key: Path | str) -> ec.EllipticCurvePrivateKey:
    """A key file, or a key on a PKCS#11 token for a ``pkcs11:`` URI."""
    if isinstance(key, str) and is_pkcs11_uri(key):
        from donjon.steward.hsm import TokenKey

        return TokenKey.open(parse_pkcs11_uri(key))
    return _load_key(Path(key))


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CAError(f"cannot read CA certificate {path}: {exc.strerror}") from None
    try:
        return parse_certificate(data)
    except ValueError as exc:
        raise CAError(f"CA certificate {path} is not a valid certificate: {plain(exc)}") from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        mode = os.stat(path).st_mode
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CAError(f"cannot read CA key {path}: {exc.strerror}") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CAError(
            f"CA key {path} is readable by other users (mode {stat.S_IMODE(mode):04o})",
            hint=f"chmod 600 {path}",
        )
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CAError(
            f"CA key {path} is not an unencrypted PKCS#8/SEC1 key: {plain(exc)}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name not in (
        "secp256r1",
        "secp384r1",
    ):
        raise CAError(f"CA key {path} must be an ECDSA P-256 or P-384 key")
    return key
