"""Fetching AMD collateral from the Key Distribution Service, behind one interface.

This is the only network I/O in ``donjon.attestation``, and it is optional:
an offline :class:`~donjon.attestation.trust.TrustStore` never calls it.
Every request has a timeout and a bounded number of retries with backoff;
whatever comes back is verified like any other collateral (the fetcher is
not trusted, the pinned fingerprints are).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from donjon.attestation.httpget import get_with_retries
from donjon.attestation.snp.product import Product
from donjon.attestation.snp.report import TcbVersion

AMD_KDS_URL = "https://kdsintf.amd.com"


class CollateralFetcher(Protocol):
    """Where a TrustStore gets certificates and CRLs it does not have."""

    def cert_chain(self, product: Product, kind: str) -> bytes:
        """PEM ``[ASK or ASVK, ARK]`` for ``kind`` = VCEK or VLEK."""
        ...

    def vcek(self, product: Product, hwid: bytes, tcb: TcbVersion) -> bytes:
        """DER VCEK of one chip at one TCB."""
        ...

    def crl(self, product: Product, kind: str) -> bytes:
        """DER CRL issued by the product's ARK."""
        ...


class KdsFetcher:
    """AMD KDS over HTTPS (or any base URL, e.g. a mirror or a test server)."""

    def __init__(
        self,
        base_url: str = AMD_KDS_URL,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    def _get(self, path: str) -> bytes:
        url = f"{self.base_url}{path}"
        return get_with_retries(
            url,
            service="AMD KDS",
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            sleep=self._sleep,
        ).content

    @staticmethod
    def _service(kind: str) -> str:
        if kind not in ("VCEK", "VLEK"):
            raise ValueError(f"unknown endorsement key kind {kind!r}")
        return kind.lower()

    def cert_chain(self, product: Product, kind: str) -> bytes:
        return self._get(f"/{self._service(kind)}/v1/{product.value}/cert_chain")

    def crl(self, product: Product, kind: str) -> bytes:
        return self._get(f"/{self._service(kind)}/v1/{product.value}/crl")

    def vcek(self, product: Product, hwid: bytes, tcb: TcbVersion) -> bytes:
        query = f"blSPL={tcb.bl}&teeSPL={tcb.tee}&snpSPL={tcb.snp}&ucodeSPL={tcb.ucode}"
        if product is Product.TURIN:
            query = f"fmcSPL={tcb.fmc or 0}&" + query
        hwid = hwid[: product.hwid_size]
        return self._get(f"/vcek/v1/{product.value}/{hwid.hex()}?{query}")
