"""One HTTP GET with a timeout and bounded retries: how every collateral fetcher asks.

429 and 5xx are retried with exponential backoff (vendors rate-limit); any other
status is final. Whatever comes back is untrusted: the callers verify it.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from donjon.attestation.errors import CollateralMissingError


def get_with_retries(
    url: str,
    *,
    service: str,
    timeout: float,
    retries: int,
    backoff: float,
    sleep: Callable[[float], None],
) -> httpx.Response:
    """The 200 answer to ``GET url``, or a :class:`CollateralMissingError` naming it."""
    last = "no attempt"
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1))
        try:
            response = httpx.get(url, timeout=timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if response.status_code == 200:
            return response
        last = f"HTTP {response.status_code}"
        if response.status_code != 429 and response.status_code < 500:
            break
    raise CollateralMissingError(f"{service}: GET {url} failed ({last})")
