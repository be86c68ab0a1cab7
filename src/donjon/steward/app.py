"""The Steward's HTTP API (Starlette): Enarx's ``POST /`` plus Donjon's ``/v1`` routes.

Every refusal is a 4xx problem+json naming the failed check; an unexpected
failure is still a problem+json (500), never a traceback. Bodies are capped,
attestations are bounded in number and time.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from donjon import __version__
from donjon.steward import wire
from donjon.steward.console import ConsoleConfig, ConsoleMode, console_routes
from donjon.steward.errors import (
    Forbidden,
    MalformedRequest,
    Overloaded,
    RequestTooLarge,
    StewardError,
    Unauthorized,
    UnsupportedMediaType,
)
from donjon.steward.lifecycle import DrainMiddleware, Lifecycle
from donjon.steward.openapi import openapi_document
from donjon.steward.problems import from_error, problem
from donjon.steward.secrets_api import secret_routes
from donjon.steward.secrets_release import SecretService
from donjon.steward.service import Attestation, Steward, checks_json, result_json, verdict_json

log = logging.getLogger("donjon.steward")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PKIX_CERT = "application/pkix-cert"
PKIX_CRL = "application/pkix-crl"
_ROUTES = frozenset(
    {
        "/",
        "/v1/attest",
        "/v1/challenge",
        "/v1/ca",
        "/v1/crl",
        "/v1/revoke",
        "/metrics",
        "/openapi.json",
        "/healthz",
        "/readyz",
    }
)


@dataclass(frozen=True)
class AppSettings:
    max_body: int = 256 * 1024  # the largest Enarx vector (SGX) is 15 KiB
    max_concurrent: int = 8  # attestations verified at once; more wait
    queue_timeout: float = 10.0  # seconds a request may wait for a slot
    attest_timeout: float = 30.0  # seconds one attestation may take
    admin_token: str | None = None  # bearer token of POST /v1/revoke; None disables it
    # Audit records show which workloads run where: reading them takes the read-only audit
    # token or the admin token; with neither, audit reads over HTTP are disabled.
    audit_token: str | None = None
    public_audit: bool = False  # the operator's explicit opt-out: audit reads need no token
    development: bool = False
    console: ConsoleMode = "off"  # the web console at /console (steward/console/)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it exceeds ``limit`` — before reading it all."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise MalformedRequest(
                "Content-Length is not a number", check="content-length"
            ) from None
        if declared > limit:
            raise RequestTooLarge(
                f"request body of {declared} bytes exceeds the {limit}-byte limit",
                check="body-size",
            )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body exceeds the {limit}-byte limit", check="body-size")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_bearer(request: Request, accepted: Sequence[str], *, check: str) -> None:
    """Refuse (401) unless the request carries one of ``accepted``, compared in constant time."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("missing bearer token", check=check)
    offered = given.strip().encode()
    matched = False
    for token in accepted:  # no early exit: the time does not say which token matched
        matched |= hmac.compare_digest(offered, token.encode())
    if not matched:
        raise Unauthorized("wrong bearer token", check=check)


def policy_summary(policy: Any) -> dict[str, Any]:
    """What an operator must see at a glance: opt-ins that widen the policy."""
    freshness = getattr(policy, "freshness", None)
    accepting_any = getattr(policy, "accepting_any", None)
    return {
        "digest": getattr(policy, "digest", None),
        "accept_any_workload": accepting_any() if accepting_any is not None else [],
        "freshness": None
        if freshness is None
        else {
            "donjon": freshness.donjon,
            "enarx": freshness.enarx,
            "nonce_lifetime_seconds": int(freshness.nonce_lifetime.total_seconds()),
        },
    }


def _pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


class _Handlers:
    def __init__(self, steward: Steward, settings: AppSettings, lifecycle: Lifecycle) -> None:
        self.steward = steward
        self.settings = settings
        self.lifecycle = lifecycle
        self.slots = asyncio.Semaphore(settings.max_concurrent)

    async def health(self, request: Request) -> Response:
        body = {
            "status": "ok",
            "version": __version__,
            "development": self.settings.development,
            "policy": policy_summary(self.steward.policy),
        }
        return JSONResponse(body)

    async def challenge(self, request: Request) -> Response:
        body = await _read_body(request, 1024)
        if body.strip() not in (b"", b"{}"):
            raise MalformedRequest("POST /v1/challenge takes no body", check="body")
        issued = await run_in_threadpool(self.steward.challenge)
        return JSONResponse(
            {
                "nonce": issued.nonce.hex(),
                "expires_at": issued.expires_at.isoformat(),
                "lifetime_seconds": int(self.steward.nonce_lifetime.total_seconds()),
            },
            headers={"Cache-Control": "no-store"},
        )

    async def healthz(self, request: Request) -> Response:
        """Liveness: the process answers. Nothing else, so a database outage restarts nothing."""
        return JSONResponse({"status": "ok", "draining": self.lifecycle.draining})

    async def readyz(self, request: Request) -> Response:
        """Readiness: the database answers and the CA key signs; 503 names what does not."""
        failed = await run_in_threadpool(self.steward.readiness)
        if self.lifecycle.draining:
            failed["lifecycle"] = "shutting down"
        if failed:
            return problem(
                503,
                "not-ready",
                "; ".join(f"{k}: {v}" for k, v in failed.items()),
                extra={"failed": failed},
                headers={"Retry-After": "2"},
            )
        return JSONResponse({"status": "ready"})

    async def _attest(self, request: Request) -> tuple[str, Attestation]:
        media = _media_type(request)
        if media not in (wire.PKCS10, wire.BUNDLE):
            raise UnsupportedMediaType(
                f"Content-Type {media or '(none)'!r} is not accepted: send "
                f"{wire.PKCS10} or {wire.BUNDLE}",
                check="content-type",
            )
        body = await _read_body(request, self.settings.max_body)
        if not body:
            raise MalformedRequest("empty request body: expected a DER CSR", check="csr")
        csrs = [body] if media == wire.PKCS10 else wire.decode_bundle(body)
        try:
            await asyncio.wait_for(self.slots.acquire(), self.settings.queue_timeout)
        except TimeoutError:
            raise Overloaded("too many attestations in progress; retry later") from None
        try:
            attestation = await asyncio.wait_for(
                run_in_threadpool(self.steward.attest, csrs), self.settings.attest_timeout
            )
        except TimeoutError:
            raise Overloaded(
                f"attestation took longer than {self.settings.attest_timeout:g} s"
            ) from None
        finally:
            self.slots.release()
        return media, attestation

    def _der_answer(self, media: str, attestation: Attestation) -> Response:
        ca = self.steward.ca.certificate_der
        issued = [item.der for item in attestation.issued]
        if media == wire.PKCS10:
            body = wire.encode_certificates([ca, issued[0]])
        else:
            body = wire.encode_bundle_output([ca], issued)
        return Response(body, media_type="application/octet-stream")

    async def enarx_attest(self, request: Request) -> Response:
        media, attestation = await self._attest(request)
        return self._der_answer(media, attestation)

    async def attest_v1(self, request: Request) -> Response:
        media, attestation = await self._attest(request)
        if not _wants_json(request):
            return self._der_answer(media, attestation)
        ca_pem = self.steward.ca.certificate_pem.decode()
        issued = [
            {
                "serial": item.serial_hex,
                "certificate": _pem(item.der),
                "not_after": item.certificate.not_valid_after_utc.isoformat(),
                "claims": result_json(item),
            }
            for item in attestation.issued
        ]
        first = attestation.verdicts[0]
        return JSONResponse(
            {
                "certificates": [ca_pem] + [i["certificate"] for i in issued],
                "issued": issued,
                "verdict": verdict_json(first),
                "checks": checks_json(first),
            }
        )

    async def ca(self, request: Request) -> Response:
        if PKIX_CERT in request.headers.get("accept", ""):
            return Response(self.steward.ca.certificate_der, media_type=PKIX_CERT)
        return Response(self.steward.ca.certificate_pem, media_type="application/x-pem-file")

    async def crl(self, request: Request) -> Response:
        crl = await run_in_threadpool(self.steward.crl)
        if request.query_params.get("format") == "pem":
            return Response(
                crl.public_bytes(serialization.Encoding.PEM), media_type="application/x-pem-file"
            )
        return Response(crl.public_bytes(serialization.Encoding.DER), media_type=PKIX_CRL)

    def _authorize_audit(self, request: Request) -> None:
        """Before the serial is even parsed: an unauthorized caller learns nothing, not even 404."""
        if self.settings.public_audit:
            return
        tokens = [t for t in (self.settings.audit_token, self.settings.admin_token) if t]
        if not tokens:
            raise Forbidden(
                "audit reads over HTTP are disabled: start the Steward with an audit or admin "
                "token, or --public-audit",
                check="audit-token",
            )
        _check_bearer(request, tokens, check="audit-token")

    async def certificate(self, request: Request) -> Response:
        self._authorize_audit(request)
        serial = str(request.path_params["serial"])
        record = await run_in_threadpool(self.steward.store.get, serial)
        return JSONResponse(record.to_json())

    def _authorize(self, request: Request) -> None:
        token = self.settings.admin_token
        if not token:
            raise Forbidden(
                "revocation over HTTP is disabled: start the Steward with an admin token",
                check="admin-token",
            )
        _check_bearer(request, [token], check="admin-token")

    async def revoke(self, request: Request) -> Response:
        self._authorize(request)
        if _media_type(request) != "application/json":
            raise UnsupportedMediaType(
                "send the revocation as application/json", check="content-type"
            )
        body = await _read_body(request, 4096)
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedRequest(f"revocation body is not JSON: {exc}", check="json") from None
        if not isinstance(data, dict) or not isinstance(data.get("serial"), str):
            raise MalformedRequest('revocation body must be {"serial": "<hex>"}', check="json")
        unknown = set(data) - {"serial", "reason"}
        if unknown:
            raise MalformedRequest(f"unknown field(s) {', '.join(sorted(unknown))}", check="json")
        reason = data.get("reason", "unspecified")
        if not isinstance(reason, str):
            raise MalformedRequest("reason must be a string", check="json")
        record = await run_in_threadpool(self.steward.revoke, data["serial"], reason=reason)
        return JSONResponse(
            {
                "serial": record.serial,
                "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
                "reason": record.revocation_reason,
            }
        )

    async def metrics(self, request: Request) -> Response:
        return Response(
            self.steward.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(__version__, public_audit=self.settings.public_audit))


async def _steward_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StewardError)
    return from_error(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("internal error answering %s %s", request.method, request.url.path)
    return problem(500, "internal-error", "the Steward failed internally; see its log")


class StewardApp:
    """The ASGI app: counts and times every request by route, around the drain gate."""

    def __init__(self, app: ASGIApp, steward: Steward, lifecycle: Lifecycle) -> None:
        self.app = DrainMiddleware(app, lifecycle)
        self.metrics = steward.metrics
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = (
            path
            if path in _ROUTES
            else ("/v1/certificates/{serial}" if path.startswith("/v1/certificates/") else "other")
        )
        if path == "/console" or path.startswith("/console/"):  # serials stay out of labels
            route = "/console"
        if path.startswith(("/v1/secrets/", "/v1/admin/secrets")):  # names stay out of labels
            route = "/v1/secrets/{name}" if path.startswith("/v1/secrets/") else "/v1/admin/secrets"
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()


Endpoint = Callable[[Request], Awaitable[Response]]


def _guard(endpoint: Endpoint) -> Endpoint:
    """Refusals become their problem+json; anything unexpected is logged once, answered 500."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except StewardError as exc:
            return from_error(exc)
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception:
            log.exception("internal error answering %s %s", request.method, request.url.path)
            return problem(500, "internal-error", "the Steward failed internally; see its log")

    return guarded


def create_app(
    steward: Steward,
    settings: AppSettings | None = None,
    lifecycle: Lifecycle | None = None,
    secrets: SecretService | None = None,
) -> StewardApp:
    """The ASGI app of one Steward; its state lives in ``steward``, ``settings``,
    ``lifecycle`` and ``secrets``."""
    settings = settings or AppSettings()
    lifecycle = lifecycle or Lifecycle()
    h = _Handlers(steward, settings, lifecycle)
    routes = [
        Route("/", _guard(h.health), methods=["GET"]),
        Route("/healthz", _guard(h.healthz), methods=["GET"]),
        Route("/readyz", _guard(h.readyz), methods=["GET"]),
        Route("/", _guard(h.enarx_attest), methods=["POST"]),
        Route("/v1/attest", _guard(h.attest_v1), methods=["POST"]),
        Route("/v1/challenge", _guard(h.challenge), methods=["POST"]),
        Route("/v1/ca", _guard(h.ca), methods=["GET"]),
        Route("/v1/crl", _guard(h.crl), methods=["GET"]),
        Route("/v1/certificates/{serial}", _guard(h.certificate), methods=["GET"]),
        Route("/v1/revoke", _guard(h.revoke), methods=["POST"]),
        Route("/metrics", _guard(h.metrics), methods=["GET"]),
        Route("/openapi.json", _guard(h.openapi), methods=["GET"]),
        *console_routes(
            steward,
            ConsoleConfig(
                mode=settings.console,
                admin_token=settings.admin_token,
                audit_token=settings.audit_token,
                development=settings.development,
                max_upload=settings.max_body,
            ),
            read_body=_read_body,
            secrets=secrets.store if secrets is not None else None,
        ),
        *secret_routes(secrets, read_body=_read_body, authorize=h._authorize, guard=_guard),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            StewardError: _steward_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    return StewardApp(app, steward, lifecycle)
