"""HTTP routes of secrets: release to Keeps (mutual TLS) and administration (admin token).

``POST /v1/secrets/{name}``: a Keep's request, ``{"nonce", "signature"}``, over a
TLS connection that presented its certificate; answered ``{"name", "version",
"value_b64"}`` with ``Cache-Control: no-store``, or 403 naming the failed check.

``/v1/admin/secrets``: list (GET), create (``PUT .../{name}``), rotate (``POST
.../{name}/versions``), metadata and release history (``GET .../{name}``),
withdraw (``DELETE .../{name}[?version=N]``). Values go in once and never come
back out through these routes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from donjon.steward.errors import Forbidden, MalformedRequest, UnsupportedMediaType
from donjon.steward.secrets_release import SecretService, parse_policy
from donjon.steward.tlsscope import client_certificate

Endpoint = Callable[[Request], Awaitable[Response]]
ReadBody = Callable[[Request, int], Awaitable[bytes]]
MAX_ADMIN_BODY = 2 * 1024 * 1024
NO_STORE = {"Cache-Control": "no-store"}


async def _json_body(request: Request, read_body: ReadBody, limit: int) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("send application/json", check="content-type")
    body = await read_body(request, limit)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedRequest("the body is not JSON", check="json") from None
    if not isinstance(data, dict):
        raise MalformedRequest("the body must be a JSON object", check="json")
    return data


def _only(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise MalformedRequest(f"unknown field(s) {', '.join(unknown)}", check="json")


def _value(data: dict[str, Any]) -> bytes:
    raw = data.get("value_b64")
    if not isinstance(raw, str):
        raise MalformedRequest('"value_b64" (the value, base64) is required', check="json")
    try:
        return base64.b64decode(raw, validate=True)
    except (ValueError, binascii.Error):
        raise MalformedRequest('"value_b64" is not base64', check="json") from None


def secret_routes(
    service: SecretService | None,
    *,
    read_body: ReadBody,
    authorize: Callable[[Request], None],
    guard: Callable[[Endpoint], Endpoint],
) -> list[Route]:
    def enabled() -> SecretService:
        if service is None:
            raise Forbidden(
                "secrets are disabled on this Steward: start it with --secrets-kek-file "
                "(or $DONJON_STEWARD_KEK)",
                check="secrets.disabled",
            )
        return service

    async def release(request: Request) -> Response:
        svc = enabled()
        name = str(request.path_params["name"])
        data = await _json_body(request, read_body, 4096)
        _only(data, {"nonce", "signature"})
        released = await run_in_threadpool(
            lambda: svc.release(
                name,
                client_cert_der=client_certificate(request.scope),
                nonce_hex=data.get("nonce"),
                signature_b64=data.get("signature"),
            )
        )
        body = {
            "name": released.name,
            "version": released.version,
            "value_b64": base64.b64encode(released.value).decode(),
        }
        return JSONResponse(body, headers=NO_STORE)

    async def admin_list(request: Request) -> Response:
        authorize(request)
        svc = enabled()
        return JSONResponse({"secrets": await run_in_threadpool(svc.store.names)})

    async def admin_show(request: Request) -> Response:
        authorize(request)
        svc = enabled()
        name = str(request.path_params["name"])
        return JSONResponse(await run_in_threadpool(svc.meta, name))

    async def admin_put(request: Request) -> Response:
        authorize(request)
        svc = enabled()
        name = str(request.path_params["name"])
        data = await _json_body(request, read_body, MAX_ADMIN_BODY)
        _only(data, {"value_b64", "policy"})
        value, policy = _value(data), parse_policy(data.get("policy"))
        row = await run_in_threadpool(lambda: svc.put(name, value, policy, create=True))
        return JSONResponse(row.meta(), status_code=201)

    async def admin_rotate(request: Request) -> Response:
        authorize(request)
        svc = enabled()
        name = str(request.path_params["name"])
        data = await _json_body(request, read_body, MAX_ADMIN_BODY)
        _only(data, {"value_b64", "policy"})
        value = _value(data)
        policy = parse_policy(data["policy"]) if data.get("policy") is not None else None
        row = await run_in_threadpool(lambda: svc.rotate(name, value, policy))
        return JSONResponse(row.meta(), status_code=201)

    async def admin_delete(request: Request) -> Response:
        authorize(request)
        svc = enabled()
        name = str(request.path_params["name"])
        text = request.query_params.get("version")
        version = None
        if text is not None:
            if not text.isdigit() or int(text) < 1:
                raise MalformedRequest("version must be a positive integer", check="version")
            version = int(text)
        gone = await run_in_threadpool(svc.withdraw, name, version)
        return JSONResponse({"name": name, "withdrawn_versions": gone})

    return [
        Route("/v1/secrets/{name}", guard(release), methods=["POST"]),
        Route("/v1/admin/secrets", guard(admin_list), methods=["GET"]),
        Route("/v1/admin/secrets/{name}", guard(admin_show), methods=["GET"]),
        Route("/v1/admin/secrets/{name}", guard(admin_put), methods=["PUT"]),
        Route("/v1/admin/secrets/{name}", guard(admin_delete), methods=["DELETE"]),
        Route("/v1/admin/secrets/{name}/versions", guard(admin_rotate), methods=["POST"]),
    ]
