"""A client of the Steward's secret administration API (``/v1/admin/secrets``).

Used by ``donjon steward secrets ...`` and by ``donjon package push --encrypt``
to register a package key. It sends values once, over verified HTTPS with the
admin token, and never prints or logs them.
"""

from __future__ import annotations

import base64
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from donjon.errors import DonjonError


class SecretsAdminError(DonjonError):
    """The Steward refused or could not be reached; the message says which and why."""


@dataclass(frozen=True)
class SecretsAdmin:
    url: str
    token: str = field(repr=False)
    #: PEM bundle that signed the Steward's HTTPS certificate (None: the system store).
    ca_bundle: Path | None = None
    timeout_s: float = 30.0

    def _client(self) -> httpx.Client:
        try:
            context = ssl.create_default_context(
                cafile=str(self.ca_bundle) if self.ca_bundle else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise SecretsAdminError(f"{self.ca_bundle}: cannot load: {exc}") from None
        return httpx.Client(
            base_url=self.url.rstrip("/"),
            verify=context,
            timeout=self.timeout_s,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            with self._client() as client:
                response = client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise SecretsAdminError(f"steward {self.url}: unreachable: {exc}") from None
        if response.status_code >= 400:
            raise SecretsAdminError(
                f"steward {self.url}: {method} {path}: HTTP {response.status_code}: "
                f"{_detail(response)}"
            )
        return response.json()

    def put(self, name: str, value: bytes, policy: dict[str, Any]) -> dict[str, Any]:
        body = {"value_b64": base64.b64encode(value).decode(), "policy": policy}
        result: dict[str, Any] = self._call("PUT", f"/v1/admin/secrets/{name}", body)
        return result

    def rotate(self, name: str, value: bytes, policy: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"value_b64": base64.b64encode(value).decode()}
        if policy is not None:
            body["policy"] = policy
        result: dict[str, Any] = self._call("POST", f"/v1/admin/secrets/{name}/versions", body)
        return result

    def list(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/admin/secrets")["secrets"]
        return result

    def show(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/admin/secrets/{name}")
        return result

    def delete(self, name: str, version: int | None) -> dict[str, Any]:
        path = f"/v1/admin/secrets/{name}" + (f"?version={version}" if version else "")
        result: dict[str, Any] = self._call("DELETE", path)
        return result


def _detail(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except (ValueError, json.JSONDecodeError):
        return response.reason_phrase
    if isinstance(doc, dict):
        check = f" [{doc['check']}]" if doc.get("check") else ""
        return f"{doc.get('detail') or doc.get('title') or response.reason_phrase}{check}"
    return response.reason_phrase
