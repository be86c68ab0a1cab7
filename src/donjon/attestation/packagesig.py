"""Package signatures: a signer's statement that a repository's package is this manifest digest.

A signature is over a small canonical JSON *statement* (UTF-8, keys sorted, no
spaces, exactly these four keys)::

    {"digest":"sha256:<64 hex>","repository":"<host[:port]/path>",
     "type":"dev.donjon.package-signature","version":1}

It names the repository as well as the digest, so a signature made for one
repository cannot vouch for the same bytes pushed under another name. The
parser re-encodes what it read and refuses anything but that exact form (no
duplicate keys, no spaces, no other key), and refuses a statement of another
type or version: a newer format is never read as this one.

Algorithms (the signer's key decides which one; the record names it, and a
name that does not fit the key, or an unknown one, is refused):

- ``ecdsa-p256-sha256``: ECDSA over P-256 with SHA-256, DER ``Ecdsa-Sig-Value``;
- ``ecdsa-p384-sha384``: ECDSA over P-384 with SHA-384, DER ``Ecdsa-Sig-Value``;
- ``ed25519``: Ed25519 (RFC 8032) over the statement bytes.

A signer's key is named by its *key id*, SHA-256 of its SubjectPublicKeyInfo DER.
:func:`judge` is the one verification used by the Steward's policy and by the
relying party (``verify-peer --expect-signer``, connect entries).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from donjon.errors import DonjonError

STATEMENT_TYPE = "dev.donjon.package-signature"
STATEMENT_VERSION = 1
MAX_STATEMENT = 1024
MAX_SIGNATURE = 256
#: Signatures a Keep puts in its claims at most; more are not read from the registry.
MAX_SIGNATURES = 8
ECDSA_P256 = "ecdsa-p256-sha256"
ECDSA_P384 = "ecdsa-p384-sha384"
ED25519 = "ed25519"
ALGORITHMS = (ECDSA_P256, ECDSA_P384, ED25519)

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"  # noqa: E501
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_HOST}/{_COMPONENT}(?:/{_COMPONENT})*$")
_KEYS = frozenset({"digest", "repository", "type", "version"})


class SignatureFormatError(DonjonError):
    """A statement, key or signature record that is not in a form this Donjon reads."""


class UnknownAlgorithmError(SignatureFormatError):
    """A signature algorithm or key type this Donjon does not verify."""


class UnknownStatementVersionError(SignatureFormatError):
    """A statement of another type or version: refused, never read as version 1."""


@dataclass(frozen=True)
class Statement:
    repository: str  # host[:port]/path, as in oci://host[:port]/path
    digest: str  # sha256:<64 hex> of the package's OCI manifest

    def to_bytes(self) -> bytes:
        doc = {
            "digest": self.digest,
            "repository": self.repository,
            "type": STATEMENT_TYPE,
            "version": STATEMENT_VERSION,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def check_repository(text: str, where: str) -> str:
    """``host[:port]/path`` with the OCI distribution spec's path components."""
    if len(text) > 255 + 262 or not _REPOSITORY.match(text):
        raise SignatureFormatError(
            f"{where}: {text[:80]!r} is not a repository like registry.example/team/app"
        )
    return text


def statement(repository: str, digest: str) -> Statement:
    check_repository(repository, "repository")
    if not _DIGEST.match(digest):
        raise SignatureFormatError(f"{digest[:80]!r} is not sha256:<64 lowercase hex>")
    return Statement(repository, digest)


def parse_statement(data: bytes) -> Statement:
    """The statement's fields; anything but the canonical version-1 form is refused."""
    if not data or len(data) > MAX_STATEMENT:
        raise SignatureFormatError(f"statement is {len(data)} bytes (1..{MAX_STATEMENT})")
    try:
        doc: Any = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise SignatureFormatError("statement is not ASCII JSON") from None
    if not isinstance(doc, dict):
        raise SignatureFormatError("statement is not a JSON object")
    if doc.get("type") != STATEMENT_TYPE:
        raise UnknownStatementVersionError(
            f"statement type {str(doc.get('type'))[:60]!r} is not {STATEMENT_TYPE!r}"
        )
    version = doc.get("version")
    if type(version) is not int or version != STATEMENT_VERSION:
        raise UnknownStatementVersionError(
            f"statement version {str(version)[:20]} is unknown (this Donjon reads "
            f"{STATEMENT_VERSION})"
        )
    if set(doc) != _KEYS:
        extra = sorted(set(doc) - _KEYS) or sorted(_KEYS - set(doc))
        raise SignatureFormatError(f"statement keys differ from version 1: {extra[0][:40]!r}")
    repository, digest = doc["repository"], doc["digest"]
    if not isinstance(repository, str) or not isinstance(digest, str):
        raise SignatureFormatError("statement repository and digest must be strings")
    parsed = statement(repository, digest)
    if parsed.to_bytes() != data:
        raise SignatureFormatError("statement is not in canonical form (sorted keys, no spaces)")
    return parsed


# --- keys ----------------------------------------------------------------------------------


def algorithm_of(key: PublicKey | PrivateKey) -> str:
    """The one algorithm a key signs with; RSA, P-521 and others are refused."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return ED25519
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return ECDSA_P256
        if isinstance(key.curve, ec.SECP384R1):
            return ECDSA_P384
        raise UnknownAlgorithmError(f"ECDSA curve {key.curve.name} is not P-256 or P-384")
    kind = type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey")
    raise UnknownAlgorithmError(
        f"{kind or 'this'} keys are not signer keys (ECDSA P-256/P-384 or Ed25519)"
    )


def key_id(key: PublicKey) -> bytes:
    """SHA-256 of the key's SubjectPublicKeyInfo DER."""
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def _signer_kind(key: object, where: str) -> None:
    try:
        algorithm_of(key)  # type: ignore[arg-type]
    except UnknownAlgorithmError as exc:
        raise UnknownAlgorithmError(f"{where}: {exc}") from None


def load_public_key(pem: bytes, where: str) -> PublicKey:
    """A signer's public key from PEM (SubjectPublicKeyInfo)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SignatureFormatError(f"{where}: not a PEM public key") from None
    _signer_kind(key, where)
    assert isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return key


def load_private_key(pem: bytes, where: str) -> PrivateKey:
    """A signer's private key from PEM (PKCS#8 or SEC1, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise SignatureFormatError(
            f"{where}: the key is encrypted; give an unencrypted PEM"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SignatureFormatError(f"{where}: not a PEM private key") from None
    _signer_kind(key, where)
    assert isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
    return key


#: load_signer's source for a key written into the policy or config itself.
INLINE_PEM = "inline PEM"


def load_signer(value: str, base_dir: Path, where: str) -> tuple[PublicKey, str]:
    """A signer's public key as a policy or a Keep config names it: inline PEM, or a path
    relative to ``base_dir``; with where it came from (for messages)."""
    if value.lstrip().startswith("-----BEGIN"):
        source, pem = INLINE_PEM, value.encode()
    else:
        path = (base_dir / value).resolve()
        source = str(path)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise SignatureFormatError(f"{where} {path}: cannot read: {exc.strerror}") from None
    return load_public_key(pem, f"{where} {source}"), source


def generate_key(algorithm: str) -> PrivateKey:
    if algorithm == ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == ECDSA_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == ECDSA_P384:
        return ec.generate_private_key(ec.SECP384R1())
    raise UnknownAlgorithmError(f"unknown algorithm {algorithm!r} ({', '.join(ALGORITHMS)})")


# --- signatures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureRecord:
    """One signature as stored in the registry and carried in the Keep's claims."""

    statement: bytes
    algorithm: str
    key_id: bytes  # SHA-256 of the signer's SPKI DER (a hint: the verifying key decides)
    signature: bytes

    def __post_init__(self) -> None:
        if not 0 < len(self.statement) <= MAX_STATEMENT:
            raise SignatureFormatError(f"statement is {len(self.statement)} bytes")
        if not 0 < len(self.algorithm) <= 32:
            raise SignatureFormatError("algorithm name is empty or longer than 32 characters")
        if len(self.key_id) != 32:
            raise SignatureFormatError(f"key id is {len(self.key_id)} bytes, not 32")
        if not 0 < len(self.signature) <= MAX_SIGNATURE:
            raise SignatureFormatError(
                f"signature is {len(self.signature)} bytes (1..{MAX_SIGNATURE})"
            )


def _hash_for(algorithm: str) -> hashes.HashAlgorithm:
    return hashes.SHA256() if algorithm == ECDSA_P256 else hashes.SHA384()


def sign(key: PrivateKey, repository: str, digest: str) -> SignatureRecord:
    algorithm = algorithm_of(key)
    body = statement(repository, digest).to_bytes()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(body)
    else:
        raw = key.sign(body, ec.ECDSA(_hash_for(algorithm)))
    return SignatureRecord(body, algorithm, key_id(key.public_key()), raw)


def verify_signature(record: SignatureRecord, key: PublicKey) -> bool:
    """The signature is the key's over the statement bytes, with the key's algorithm."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(record.signature, record.statement)
        else:
            key.verify(record.signature, record.statement, ec.ECDSA(_hash_for(record.algorithm)))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Judgement:
    """Whether some signature vouches for (repository, digest); else the best reason why not."""

    ok: bool
    #: ``signed`` when ok; else unsigned, algorithm, signer, signature, statement,
    #: signed_repository or signed_digest (each a refusal of its own).
    reason: str
    message: str


#: How far a failed signature got: the refusal names the one that got furthest.
_DEPTH = {
    "algorithm": 1,
    "signer": 2,
    "signature": 3,
    "statement": 4,
    "signed_repository": 5,
    "signed_digest": 6,
}


def judge(
    records: Sequence[SignatureRecord],
    repository: str,
    digest: bytes,
    signers: Mapping[bytes, PublicKey],
    *,
    whose: str = "an allowed signer",
) -> Judgement:
    """Accept when one record verifies with a key in ``signers`` (by key id) over a
    statement naming exactly ``repository`` and ``digest``."""
    wanted = "sha256:" + digest.hex()
    if not records:
        return Judgement(False, "unsigned", "not signed (no signature was found for it)")
    best: tuple[int, str, str] | None = None
    for index, record in enumerate(records):
        reason, message = _judge_one(record, repository, wanted, signers, whose)
        if reason == "signed":
            return Judgement(True, reason, message)
        text = (
            f"signature {index + 1} of {len(records)}: {message}" if len(records) > 1 else message
        )
        if best is None or _DEPTH[reason] > best[0]:
            best = (_DEPTH[reason], reason, text)
    assert best is not None
    return Judgement(False, best[1], best[2])


def _judge_one(
    record: SignatureRecord,
    repository: str,
    wanted: str,
    signers: Mapping[bytes, PublicKey],
    whose: str,
) -> tuple[str, str]:
    named = "sha256:" + record.key_id.hex()[:16] + "..."  # messages stay short (Steward logs)
    if record.algorithm not in ALGORITHMS:
        return "algorithm", (
            f"unknown signature algorithm {record.algorithm[:32]!r} "
            f"(this Donjon verifies {', '.join(ALGORITHMS)})"
        )
    key = signers.get(record.key_id)
    if key is None:
        return "signer", f"signed by key {named}, which is not {whose}"
    if algorithm_of(key) != record.algorithm:
        return "algorithm", f"algorithm {record.algorithm} does not fit key {named}"
    if not verify_signature(record, key):
        return "signature", f"the signature by key {named} does not verify over its statement"
    try:
        said = parse_statement(record.statement)
    except SignatureFormatError as exc:
        return "statement", f"signed by key {named}, but {exc}"
    if said.repository != repository:
        return "signed_repository", (
            f"key {named} signed it for repository {said.repository}, "
            f"but the package came from {repository}"
        )
    if said.digest != wanted:
        return "signed_digest", f"key {named} signed package {said.digest}, not {wanted}"
    return "signed", f"signed by key {named} for {repository}"


def repository_matches(pattern: str, repository: str) -> bool:
    """Exact, or ``host/path/*``: any repository below ``host/path/`` (whole components)."""
    if pattern.endswith("/*"):
        return repository.startswith(pattern[:-1]) and len(repository) > len(pattern) - 1
    return pattern == repository


def check_repository_pattern(text: str, where: str) -> str:
    """A repository, or one ending in ``/*`` (a prefix of whole path components)."""
    check_repository(text.removesuffix("/*") if text.endswith("/*") else text, where)
    if text.endswith("/*") and "/" not in text.removesuffix("/*"):
        raise SignatureFormatError(f"{where}: {text!r}: a prefix names the registry and a path")
    return text


def fingerprint(key: PublicKey) -> str:
    return "sha256:" + key_id(key).hex()


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def records_json(records: Sequence[SignatureRecord]) -> list[dict[str, str]]:
    """As the JSON outputs show them (the statement as text: it is ASCII JSON or refused)."""
    return [
        {
            "algorithm": r.algorithm,
            "key_id": "sha256:" + r.key_id.hex(),
            "statement": r.statement.decode("ascii", "replace"),
            "signature": r.signature.hex(),
        }
        for r in records
    ]
