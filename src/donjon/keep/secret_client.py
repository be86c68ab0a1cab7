"""Fetching a secret from the Keep's Steward, after attestation, over mutual TLS.

The TLS connection presents the certificate the Steward just issued (its key
never leaves memory, see ``keep/tls.py``). The request carries a fresh
challenge from ``POST /v1/challenge`` and the key's signature over it, the
secret's name and the certificate (``steward/secrets_release.py`` says why).
A refusal is one line naming the Steward's failed check; the value is never
logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation.binding import secret_release_payload
from donjon.errors import DonjonError
from donjon.keep import tls
from donjon.keep.identity import Identity
from donjon.keep.steward_client import StewardClient, parse_challenge

MAX_ANSWER = 2 * 1024 * 1024


class SecretFetchError(DonjonError):
    """The Keep did not get a secret it needs; it does not start."""


@dataclass(frozen=True)
class FetchedSecret:
    name: str
    version: int
    value: bytes = field(repr=False)


def _sign(identity: Identity, payload: bytes) -> bytes:
    key = identity.key
    algorithm = hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    return key.sign(payload, ec.ECDSA(algorithm))


class SecretClient:
    """One mutual-TLS HTTP client to the Steward for the secrets of one Keep start."""

    def __init__(self, steward_url: str, ca_bundle: Path | None, identity: Identity) -> None:
        import httpx

        if identity.ca is None:
            raise SecretFetchError(
                "secrets need a Steward-issued certificate, and this Keep has none"
            )
        self.steward = StewardClient.from_config(steward_url, ca_bundle)
        context = self.steward.ssl_context()
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
        tls.load_identity(context, identity)
        self.identity = identity
        self.http = httpx.Client(verify=context, timeout=self.steward.timeout_s)
        self.base = steward_url.rstrip("/")

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SecretClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, name: str) -> FetchedSecret:
        import httpx

        where = f"secret {name!r} from {self.base}"
        try:
            answer = self.http.post(self.base + "/v1/challenge")
            if answer.status_code != 200:
                raise SecretFetchError(f"{where}: challenge refused: HTTP {answer.status_code}")
            nonce = parse_challenge(answer.content, self.base + "/v1/challenge")
            cert_der = self.identity.certificate.public_bytes(Encoding.DER)
            signature = _sign(self.identity, secret_release_payload(nonce, name, cert_der))
            response = self.http.post(
                f"{self.base}/v1/secrets/{name}",
                json={"nonce": nonce.hex(), "signature": base64.b64encode(signature).decode()},
            )
        except httpx.HTTPError as exc:
            raise SecretFetchError(f"{where}: unreachable: {exc}") from None
        if response.status_code != 200:
            raise SecretFetchError(f"{where}: refused: {_refusal(response)}")
        if len(response.content) > MAX_ANSWER:
            raise SecretFetchError(f"{where}: the answer is larger than {MAX_ANSWER} bytes")
        try:
            doc = json.loads(response.content)
            value = base64.b64decode(doc["value_b64"], validate=True)
            version = int(doc["version"])
            if doc.get("name") != name:
                raise ValueError("another secret's answer")
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise SecretFetchError(f"{where}: malformed answer ({exc})") from None
        return FetchedSecret(name, version, value)


def _refusal(response: object) -> str:
    status = getattr(response, "status_code", 0)
    try:
        doc = json.loads(getattr(response, "content", b""))
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict):
        check = f" [{doc['check']}]" if doc.get("check") else ""
        return f"HTTP {status}: {doc.get('detail') or doc.get('title')}{check}"
    return f"HTTP {status}"
