"""The TLS client certificate in the ASGI scope, which uvicorn does not put there.

uvicorn hands the app no TLS details. Its HTTP protocol classes take the
application from ``self.app`` on every request and see the transport in
``connection_made``; :func:`with_client_certificate` subclasses the protocol
uvicorn would pick so that each connection's app adds, per the ASGI TLS
extension, ``scope["extensions"]["tls"]`` with the peer's certificate (DER,
the leaf: Python's ``ssl`` gives no more) and the TLS version. The certificate
is read from the connection itself, never from a header a proxy could forge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]
TLS_EXTENSION = "tls"


def client_certificate(scope: Scope) -> bytes | None:
    """The DER client certificate of the request's connection, if it presented one."""
    tls = scope.get("extensions", {}).get(TLS_EXTENSION) or {}
    der = tls.get("client_cert_der")
    return der if isinstance(der, bytes) and der else None


def _tls_app(app: App, info: dict[str, Any]) -> App:
    async def with_tls(scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            extensions = dict(scope.get("extensions") or {})
            extensions[TLS_EXTENSION] = info
            scope["extensions"] = extensions
        await app(scope, receive, send)

    return with_tls


def with_client_certificate(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's HTTP protocol class ``base`` that exposes the client cert."""

    class TlsScopeProtocol(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is None:
                return
            der = ssl_object.getpeercert(binary_form=True)
            info = {
                "client_cert_der": der or None,
                "tls_version": ssl_object.version(),
                "cipher_suite": (ssl_object.cipher() or ("",))[0],
            }
            original: App = self.__dict__["app"]  # set by uvicorn's __init__
            self.app = _tls_app(original, info)

    TlsScopeProtocol.__name__ = f"TlsScope{base.__name__}"
    return TlsScopeProtocol
