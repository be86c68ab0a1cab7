"""Registry credentials and the distribution spec's auth handshake (basic and bearer token).

Credentials come, first found wins, from ``$DONJON_REGISTRY_USERNAME`` /
``$DONJON_REGISTRY_PASSWORD``, the file ``$REGISTRY_AUTH_FILE`` (Podman,
Skopeo), then ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``.
Credential helpers (``credsStore``, ``credHelpers``) run programs, which a Keep
does not do: they are named in the error when they are the only source.

The handshake: a request gets 401 with ``WWW-Authenticate``; ``Basic`` is
answered with the credentials, ``Bearer realm=... service=... scope=...`` by
asking the realm for a token (with the credentials, if any) and retrying with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from donjon.errors import DonjonError, UsageError

ENV_USERNAME = "DONJON_REGISTRY_USERNAME"
ENV_PASSWORD = "DONJON_REGISTRY_PASSWORD"
ENV_AUTH_FILE = "REGISTRY_AUTH_FILE"
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
MAX_TOKEN_RESPONSE = 64 * 1024


class RegistryAuthError(DonjonError):
    """The registry refused our credentials, or we have none it accepts."""


@dataclass(frozen=True)
class Credentials:
    username: str = field(repr=False)
    password: str = field(repr=False)
    #: Where they came from, for messages (never the secret itself).
    source: str = ""

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def _config_files(env: Mapping[str, str]) -> list[Path]:
    files = []
    if env.get(ENV_AUTH_FILE):
        files.append(Path(env[ENV_AUTH_FILE]))
    docker_dir = env.get("DOCKER_CONFIG")
    if docker_dir:
        files.append(Path(docker_dir) / "config.json")
    home = env.get("HOME")
    if home:
        files.append(Path(home) / ".docker" / "config.json")
    return files


def _entry_credentials(entry: Any, where: str) -> Credentials | None:
    if not isinstance(entry, dict):
        raise UsageError(f"{where}: expected an object")
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, sep, password = (
                base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(f"{where}.auth: not base64 of user:password") from None
        if not sep:
            raise UsageError(f"{where}.auth: not base64 of user:password")
        return Credentials(user, password, where)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Credentials(entry["username"], entry["password"], where)
    return None


def find_credentials(registry: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials for ``registry`` (``host[:port]``), or None: then we try anonymously."""
    env = os.environ if env is None else env
    user, password = env.get(ENV_USERNAME), env.get(ENV_PASSWORD)
    if user and password is not None:
        return Credentials(user, password, f"${ENV_USERNAME}")
    helpers: list[str] = []
    for path in _config_files(env):
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: cannot read registry credentials: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: expected a JSON object")
        auths = data.get("auths") or {}
        if not isinstance(auths, dict):
            raise UsageError(f"{path}: auths: expected an object")
        for key, entry in auths.items():
            name = str(key).removeprefix("https://").removeprefix("http://").rstrip("/")
            name = name.removesuffix("/v1").removesuffix("/v2")
            if name == registry:
                found = _entry_credentials(entry, f"{path}: auths.{key}")
                if found is not None:
                    return found
        if isinstance(data.get("credHelpers"), dict) and registry in data["credHelpers"]:
            helpers.append(f"{path}: credHelpers")
        elif data.get("credsStore"):
            helpers.append(f"{path}: credsStore")
    if helpers:
        raise RegistryAuthError(
            f"registry {registry}: credentials are only in a credential helper ({helpers[0]}), "
            "which Donjon does not run",
            hint=f"set ${ENV_USERNAME} and ${ENV_PASSWORD}, or an auths entry in ${ENV_AUTH_FILE}",
        )
    return None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {"realm": ..., ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) or m.group(3) or "") for m in _PARAM.finditer(rest)}
    return scheme.lower(), params


class RegistryAuth(httpx.Auth):
    """httpx auth flow: anonymous first, then what the 401 asks for; tokens kept per scope."""

    def __init__(self, registry: str, credentials: Credentials | None, scope: str) -> None:
        self.registry = registry
        self.credentials = credentials
        self.scope = scope
        self._header: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._header is not None:
            request.headers["Authorization"] = self._header
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if self.credentials is None:
                raise self._no_credentials()
            self._header = self.credentials.basic()
        elif scheme == "bearer":
            realm = params.get("realm", "")
            if not realm.startswith(("https://", "http://")):
                raise RegistryAuthError(
                    f"registry {self.registry}: bearer challenge without a usable realm"
                )
            query = {"service": params["service"]} if "service" in params else {}
            scope = params.get("scope") or self.scope
            token_request = httpx.Request(
                "GET", realm, params={**query, "scope": scope} if scope else query
            )
            if self.credentials is not None:
                token_request.headers["Authorization"] = self.credentials.basic()
            token_response = yield token_request
            token_response.read()
            if token_response.status_code in (401, 403):
                raise self._rejected(token_response.status_code)
            self._header = "Bearer " + _token(token_response, self.registry)
        else:
            raise RegistryAuthError(
                f"registry {self.registry}: unsupported auth scheme {scheme or '(none)'!r}"
            )
        request.headers["Authorization"] = self._header
        retry = yield request
        if retry.status_code == 401:
            self._header = None
            raise self._rejected(401)

    def _no_credentials(self) -> RegistryAuthError:
        return RegistryAuthError(
            f"registry {self.registry} asks for credentials and none are configured",
            hint=f"docker/podman login {self.registry}, or set ${ENV_USERNAME} and ${ENV_PASSWORD}",
        )

    def _rejected(self, status: int) -> RegistryAuthError:
        if self.credentials is None:
            return self._no_credentials()
        return RegistryAuthError(
            f"registry {self.registry} refused the credentials from {self.credentials.source} "
            f"(HTTP {status})"
        )


def _token(response: httpx.Response, registry: str) -> str:
    if response.status_code != 200 or len(response.content) > MAX_TOKEN_RESPONSE:
        raise RegistryAuthError(
            f"registry {registry}: token endpoint answered HTTP {response.status_code}"
        )
    try:
        data = response.json()
    except ValueError:
        data = None
    token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        raise RegistryAuthError(f"registry {registry}: token endpoint gave no token")
    return token
