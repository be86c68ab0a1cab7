"""Fetching Intel collateral from Intel PCS (v4 API) or a PCCS, behind one interface.

Optional network I/O, like ``kds.py`` for AMD: every request has a timeout
and bounded retries with backoff, and whatever comes back is verified like
any other collateral (the server is not trusted; the pinned root is). The
issuer chains travel in URL-encoded PEM response headers, as Intel serves them.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Protocol

import httpx
from cryptography import x509

from donjon.attestation.dcap.collateral import (
    CollateralBundle,
    Signed,
    load_crl,
    signed_from_pcs,
)
from donjon.attestation.errors import MalformedEvidenceError
from donjon.attestation.httpget import get_with_retries
from donjon.attestation.x509util import load_certificates

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
INTEL_ROOT_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

_CRL_CHAIN = "SGX-PCK-CRL-Issuer-Chain"
_TCB_CHAIN = ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain")
_QE_CHAIN = ("SGX-Enclave-Identity-Issuer-Chain",)


class IntelFetcher(Protocol):
    """Where the collateral store gets what no file has: one quote's whole bundle."""

    @property
    def where(self) -> str: ...

    def bundle(self, tee: str, fmspc: bytes, ca: str) -> CollateralBundle:
        """TCB Info and QE Identity for ``tee`` ("SGX"/"TDX"), the PCK CRL of ``ca``
        ("processor"/"platform") and the root CA CRL."""
        ...


class PcsFetcher:
    """Intel PCS v4, or a PCCS (same paths; its own root CA CRL endpoint)."""

    def __init__(
        self,
        base_url: str = INTEL_PCS_URL,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        root_crl_url: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        if root_crl_url is None:
            root_crl_url = (
                INTEL_ROOT_CRL_URL
                if self.base_url == INTEL_PCS_URL
                else f"{self.base_url}/sgx/certification/v4/rootcacrl"
            )
        self.root_crl_url = root_crl_url

    @property
    def where(self) -> str:
        return "Intel PCS" if self.base_url == INTEL_PCS_URL else f"PCCS {self.base_url}"

    def _get(self, url: str) -> httpx.Response:
        return get_with_retries(
            url,
            service=self.where,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            sleep=self._sleep,
        )

    def _chain(
        self, response: httpx.Response, names: tuple[str, ...], url: str
    ) -> list[x509.Certificate]:
        for name in names:
            value = response.headers.get(name)
            if value:
                pem = urllib.parse.unquote(value).encode()
                return load_certificates(pem, what=f"{name} header of {url}")
        raise MalformedEvidenceError(f"{self.where}: {url} answered without a {names[0]} header")

    def _signed(self, path: str, kind: str, names: tuple[str, ...]) -> Signed:
        url = f"{self.base_url}{path}"
        response = self._get(url)
        chain = self._chain(response, names, url)
        return signed_from_pcs(response.content, chain, kind, url)

    def bundle(self, tee: str, fmspc: bytes, ca: str) -> CollateralBundle:
        if tee not in ("SGX", "TDX") or ca not in ("processor", "platform"):
            raise ValueError(f"unknown TEE {tee!r} or PCK CA {ca!r}")
        service = tee.lower()
        tcb = self._signed(
            f"/{service}/certification/v4/tcb?fmspc={fmspc.hex().upper()}", "tcb_info", _TCB_CHAIN
        )
        qe = self._signed(f"/{service}/certification/v4/qe/identity", "qe_identity", _QE_CHAIN)
        crl_url = f"{self.base_url}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"
        crl_response = self._get(crl_url)
        crl_chain = tuple(self._chain(crl_response, (_CRL_CHAIN,), crl_url))
        pck_crl = load_crl(crl_response.content, f"PCK CRL from {crl_url}")
        root_crl = load_crl(
            self._get(self.root_crl_url).content, f"root CA CRL from {self.root_crl_url}"
        )
        return CollateralBundle(tcb, qe, root_crl, pck_crl, crl_chain, self.where)
