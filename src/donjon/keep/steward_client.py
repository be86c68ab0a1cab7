"""Asking a Steward for a certificate: Enarx's protocol, over verified HTTPS.

``POST <steward>/`` with ``Content-Type: application/pkcs10`` and the DER CSR;
the answer is a DER ``SEQUENCE OF Certificate``, ``[CA, leaf]`` (Enarx order;
more intermediates may sit between). A refusal or an unreachable Steward stops
the Keep: it never falls back to a self-signed certificate on its own.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_modules import rfc5280

from donjon.attestation.der import DECODE_ERRORS
from donjon.attestation.x509util import X509_LOAD_ERRORS
from donjon.errors import DonjonError, plain

ENV_STEWARD_CA = "DONJON_STEWARD_CA"
DEFAULT_TIMEOUT_S = 30.0
PKCS10 = "application/pkcs10"
MAX_RESPONSE = 1 << 20


class StewardError(DonjonError):
    """The Keep did not get a usable certificate from its Steward."""


class StewardUnreachable(StewardError):
    """No answer: DNS, connection, TLS or timeout."""


class StewardRefused(StewardError):
    """The Steward answered, and said no (4xx/5xx)."""


class StewardBadResponse(StewardError):
    """The Steward's answer is not a certificate chain for our key."""


class _CertificateList(univ.SequenceOf):
    componentType = rfc5280.Certificate()


@dataclass(frozen=True)
class StewardClient:
    url: str
    #: PEM bundle that must have signed the Steward's HTTPS certificate; ``None``: system store.
    ca_bundle: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_config(cls, url: str, ca_bundle: Path | None) -> StewardClient:
        env = os.environ.get(ENV_STEWARD_CA)
        return cls(url=url, ca_bundle=ca_bundle or (Path(env) if env else None))

    def ssl_context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_bundle) if self.ca_bundle else None)
        except (OSError, ssl.SSLError) as exc:
            raise StewardError(
                f"steward CA bundle {self.ca_bundle}: cannot load: {plain(exc)}"
            ) from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3  # as the Steward: TLS 1.3 only
        return ctx

    def request(self, csr: x509.CertificateSigningRequest) -> list[x509.Certificate]:
        """POST the CSR; return the chain ``[CA, ..., leaf]`` after checking it fits the CSR."""
        import httpx  # deferred: only Keeps with a Steward pay for importing it

        body = csr.public_bytes(serialization.Encoding.DER)
        try:
            with httpx.Client(verify=self.ssl_context(), timeout=self.timeout_s) as client:
                response = client.post(
                    self.url,
                    content=body,
                    headers={"Content-Type": PKCS10, "Accept": "application/pkcs7-mime, */*"},
                )
        except httpx.TimeoutException as exc:
            raise StewardUnreachable(
                f"steward {self.url}: no answer within {self.timeout_s:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise StewardUnreachable(f"steward {self.url}: unreachable: {_reason(exc)}") from exc
        if response.status_code != 200:
            raise StewardRefused(
                f"steward {self.url} refused the certificate request: "
                f"HTTP {response.status_code}: {_problem_detail(response.content)}"
            )
        if len(response.content) > MAX_RESPONSE:
            raise StewardBadResponse(
                f"steward {self.url}: response larger than {MAX_RESPONSE} bytes"
            )
        chain = parse_chain(response.content)
        check_chain(chain, csr)
        return chain

    @property
    def challenge_url(self) -> str:
        """The Steward's challenge endpoint, next to its Enarx ``POST /``."""
        return self.url.rstrip("/") + "/v1/challenge"

    def challenge(self) -> bytes | None:
        """A fresh nonce from ``POST <steward>/v1/challenge``; None where the Steward has none.

        An Enarx Steward (404) offers no challenge: the Keep then attests without one,
        and that Steward's policy decides whether evidence without one is acceptable.
        """
        import httpx

        try:
            with httpx.Client(verify=self.ssl_context(), timeout=self.timeout_s) as client:
                response = client.post(self.challenge_url, headers={"Accept": "application/json"})
        except httpx.TimeoutException as exc:
            raise StewardUnreachable(
                f"{self.challenge_url}: no answer within {self.timeout_s:g} s"
            ) from exc
        except httpx.HTTPError as exc:
            raise StewardUnreachable(f"{self.challenge_url}: unreachable: {_reason(exc)}") from exc
        if response.status_code in (404, 405):
            return None
        if response.status_code != 200:
            raise StewardRefused(
                f"{self.challenge_url}: HTTP {response.status_code}: "
                f"{_problem_detail(response.content)}"
            )
        return parse_challenge(response.content, self.challenge_url)

    @property
    def crl_url(self) -> str:
        """The Steward's CRL endpoint, next to its Enarx ``POST /``."""
        return self.url.rstrip("/") + "/v1/crl"

    def fetch_crl(self, timeout_s: float) -> bytes:
        """``GET <steward>/v1/crl`` (DER) over the same verified HTTPS as the CSR."""
        import httpx

        try:
            with httpx.Client(verify=self.ssl_context(), timeout=timeout_s) as client:
                response = client.get(self.crl_url, headers={"Accept": "application/pkix-crl"})
        except httpx.TimeoutException as exc:
            raise StewardUnreachable(f"{self.crl_url}: no answer within {timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise StewardUnreachable(f"{self.crl_url}: unreachable: {_reason(exc)}") from exc
        if response.status_code != 200:
            # A problem+json detail says why; any other body (a proxy's HTML page) would not.
            json_body = "json" in response.headers.get("content-type", "")
            detail = _problem_detail(response.content) if json_body else response.reason_phrase
            raise StewardRefused(f"{self.crl_url}: HTTP {response.status_code}: {detail}")
        if len(response.content) > MAX_RESPONSE:
            raise StewardBadResponse(f"{self.crl_url}: response larger than {MAX_RESPONSE} bytes")
        return response.content


def _reason(exc: Exception) -> str:
    cause: BaseException = exc
    while (nxt := cause.__cause__ or cause.__context__) is not None:
        cause = nxt
    text = str(cause) or type(cause).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def _problem_detail(body: bytes) -> str:
    """The ``detail`` of an RFC 9457 problem+json body, else a short excerpt of the body."""
    try:
        problem = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        problem = None
    if isinstance(problem, dict):
        detail = problem.get("detail") or problem.get("title")
        if isinstance(detail, str) and detail:
            return " ".join(detail.split())
    text = body[:200].decode("utf-8", "replace").strip()
    return " ".join(text.split()) or "(no detail)"


def parse_challenge(body: bytes, where: str) -> bytes:
    """The nonce of a ``/v1/challenge`` answer: 32 to 64 bytes as lowercase hex."""
    try:
        data = json.loads(body[:4096])
        nonce = bytes.fromhex(data["nonce"]) if isinstance(data.get("nonce"), str) else b""
    except (ValueError, UnicodeDecodeError, TypeError, AttributeError):
        nonce = b""
    if not 32 <= len(nonce) <= 64:
        raise StewardBadResponse(f"{where}: the answer holds no 32..64-byte hex nonce")
    return nonce


def parse_chain(der: bytes) -> list[x509.Certificate]:
    """Decode a DER ``SEQUENCE OF Certificate``."""
    try:
        value, rest = decoder.decode(der, asn1Spec=_CertificateList())
    except DECODE_ERRORS as exc:
        raise StewardBadResponse(
            f"steward response is not a DER certificate list: {plain(exc)}"
        ) from exc
    if rest:
        raise StewardBadResponse(f"steward response has {len(rest)} trailing bytes")
    try:
        certs = [x509.load_der_x509_certificate(bytes(encoder.encode(c))) for c in value]
    except X509_LOAD_ERRORS as exc:
        raise StewardBadResponse(f"steward response holds a bad certificate: {plain(exc)}") from exc
    if len(certs) < 2:
        raise StewardBadResponse(
            f"steward response has {len(certs)} certificate(s); expected [CA, leaf]"
        )
    return certs


def check_chain(
    chain: list[x509.Certificate],
    csr: x509.CertificateSigningRequest,
    now: dt.datetime | None = None,
) -> None:
    """The leaf must certify our key, be valid now, and each link be signed by the one before."""
    now = now or dt.datetime.now(dt.UTC)
    leaf = chain[-1]
    if leaf.public_key() != csr.public_key():
        raise StewardBadResponse("steward issued a certificate for a different key than our CSR")
    for issuer, subject in itertools.pairwise(chain):
        try:
            subject.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise StewardBadResponse(
                f"steward chain is broken: {subject.subject.rfc4514_string()} is not signed by "
                f"{issuer.subject.rfc4514_string()}"
            ) from exc
    for cert in chain:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise StewardBadResponse(
                f"steward certificate {cert.subject.rfc4514_string()} is not valid now "
                f"({cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
            )
