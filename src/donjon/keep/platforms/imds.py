"""Azure's Instance Metadata Service, as a confidential VM's guest uses it.

* THIM (``GET /metadata/THIM/amd/certification``, header ``Metadata: true``):
  the VCEK of this host's AMD chip at its current TCB, with the ASK and ARK,
  as JSON ``{"vcekCert": PEM, "certificateChain": PEM, ...}``;
* ``POST /acc/tdquote`` with ``{"report": base64url(TDREPORT)}``: Azure's
  quoting service turns a TDX TDREPORT into a DCAP quote, ``{"quote": base64url}``.

IMDS answers only inside the VM, at a link-local address, so proxies are never
used. ``$DONJON_AZURE_IMDS_URL`` (or ``base_url``) points elsewhere: tests run a
fake on 127.0.0.1. Nothing IMDS says is trusted: the Steward verifies it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography import x509

from donjon.keep.platforms.base import PlatformError

ENV_IMDS_URL = "DONJON_AZURE_IMDS_URL"
IMDS_URL = "http://169.254.169.254"
THIM_PATH = "/metadata/THIM/amd/certification"
TDQUOTE_PATH = "/acc/tdquote"
#: Far above a real answer (a few KiB): a bigger one is refused unread.
MAX_ANSWER = 1 << 20


class ImdsError(PlatformError):
    """IMDS did not answer, or answered something unusable."""


def _b64url_decode(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ImdsError(f"{what} is not base64url") from exc


class Imds:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = (base_url or os.environ.get(ENV_IMDS_URL) or IMDS_URL).rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        last = "no attempt"
        with httpx.Client(trust_env=False, timeout=self.timeout) as client:
            for attempt in range(self.retries + 1):
                if attempt:
                    self._sleep(self.backoff * 2 ** (attempt - 1))
                try:
                    response = client.request(method, url, **kwargs)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                    continue
                if response.status_code == 200:
                    if len(response.content) > MAX_ANSWER:
                        raise ImdsError(f"IMDS {method} {url}: answer larger than 1 MiB")
                    try:
                        return json.loads(response.content)
                    except ValueError as exc:
                        raise ImdsError(f"IMDS {method} {url}: the answer is not JSON") from exc
                last = f"HTTP {response.status_code}"
                if response.status_code != 429 and response.status_code < 500:
                    break
        raise ImdsError(f"IMDS {method} {url} failed ({last})")

    def snp_certificates(self) -> list[x509.Certificate]:
        """[VCEK, ASK, ARK] from THIM (the chain as served; the Steward judges it)."""
        doc = self._request("GET", THIM_PATH, headers={"Metadata": "true"})
        if not isinstance(doc, dict):
            raise ImdsError("THIM: the answer is not a JSON object")
        vcek, chain = doc.get("vcekCert"), doc.get("certificateChain", "")
        if not isinstance(vcek, str) or not isinstance(chain, str):
            raise ImdsError("THIM: the answer has no vcekCert/certificateChain PEM")
        try:
            certs = x509.load_pem_x509_certificates((vcek + "\n" + chain).encode())
        except ValueError as exc:
            raise ImdsError(f"THIM: the certificates are not PEM ({exc})") from exc
        return certs

    def td_quote(self, td_report: bytes) -> bytes:
        """The DCAP quote Azure's quoting service makes of ``td_report``."""
        report = base64.urlsafe_b64encode(td_report).rstrip(b"=").decode()
        doc = self._request("POST", TDQUOTE_PATH, json={"report": report})
        quote = doc.get("quote") if isinstance(doc, dict) else None
        if not isinstance(quote, str) or not quote:
            raise ImdsError("IMDS tdquote: the answer has no quote")
        return _b64url_decode(quote, "IMDS tdquote: the quote")
