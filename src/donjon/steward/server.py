"""Serve a Steward app with uvicorn: HTTPS with TLS 1.3 only, bounded connections.

Plain HTTP is refused unless development mode is asked for explicitly, and
then it is logged loudly: Keeps only talk to an ``https://`` Steward.

SIGTERM (or SIGINT) starts a drain (see ``lifecycle``): new requests get 503
and Retry-After for ``drain_seconds`` while those in flight finish; then the
server closes its socket and exits. A second SIGINT exits at once.
"""

from __future__ import annotations

import logging
import signal
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from donjon.errors import UsageError
from donjon.steward.app import ASGIApp
from donjon.steward.lifecycle import Lifecycle
from donjon.steward.tlsscope import with_client_certificate

log = logging.getLogger("donjon.steward")

DEV_BANNER = (
    "DEVELOPMENT MODE: this Steward is not fit for production "
    "(plain HTTP and/or an ephemeral CA and/or non-TEE evidence allowed)"
)


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: Path | None = None
    tls_key: Path | None = None
    development: bool = False
    #: PEM of the CA whose certificates clients may present (the Steward's own CA): asked
    #: for, optionally, in the handshake, and exposed to the app (``tlsscope``).
    client_ca_pem: bytes | None = None
    limit_concurrency: int = 256  # open connections + tasks; more get 503 from uvicorn
    timeout_keep_alive: int = 5
    log_level: str = "info"
    drain_seconds: float = 5.0  # after SIGTERM: answer 503 + Retry-After this long, then close
    graceful_timeout: float = 35.0  # then wait this long for requests still in flight


class StewardServer(uvicorn.Server):
    """uvicorn, with a drain phase between the stop signal and closing the socket."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_seconds: float) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.lifecycle.begin_drain():
            log.warning(
                "received %s: draining (new requests get 503 for %g s, %d in flight)",
                signal.Signals(sig).name,
                self.drain_seconds,
                self.lifecycle.in_flight,
            )
            return
        super().handle_exit(sig, frame)  # a second signal: uvicorn's own shutdown

    async def on_tick(self, counter: int) -> bool:
        if self.lifecycle.draining and not self.should_exit:
            waited = self.lifecycle.drained_for()
            if waited >= self.drain_seconds and self.lifecycle.in_flight == 0:
                self.should_exit = True
            elif waited >= self.drain_seconds + (self.config.timeout_graceful_shutdown or 0):
                self.should_exit = True  # uvicorn's shutdown cancels what is left
        return await super().on_tick(counter)


def build_server(app: ASGIApp, options: ServeOptions) -> StewardServer:
    """A configured, not yet started server (tests run it in a thread)."""
    if (options.tls_cert is None) != (options.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if options.tls_cert is None and not options.development:
        raise UsageError(
            "refusing to serve plain HTTP: Keeps need an https:// Steward",
            hint="pass --tls-cert and --tls-key, or --dev for a local development Steward",
        )
    http: Any = "auto"
    if options.client_ca_pem is not None and options.tls_cert is not None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        http = with_client_certificate(AutoHTTPProtocol)
    config = uvicorn.Config(
        app,
        http=http,
        host=options.host,
        port=options.port,
        ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None,
        limit_concurrency=options.limit_concurrency,
        timeout_keep_alive=options.timeout_keep_alive,
        log_level=options.log_level,
        access_log=False,
        server_header=False,
        lifespan="off",
        timeout_graceful_shutdown=max(1, round(options.graceful_timeout)),
    )
    try:
        config.load()
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot load the TLS certificate/key: {exc}") from None
    if config.ssl is not None:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3
        if options.client_ca_pem is not None:
            # Optional: Keeps attesting and everyone else connect without a certificate.
            config.ssl.verify_mode = ssl.CERT_OPTIONAL
            config.ssl.load_verify_locations(cadata=options.client_ca_pem.decode())
    if options.development:
        log.warning(DEV_BANNER)
    lifecycle = getattr(app, "lifecycle", None) or Lifecycle()
    return StewardServer(config, lifecycle, options.drain_seconds)


def serve(app: ASGIApp, options: ServeOptions, sockets: list[socket.socket] | None = None) -> None:
    """Run until stopped (SIGINT/SIGTERM drain, then stop); ``sockets`` are already bound."""
    server = build_server(app, options)
    if sockets is None:
        scheme = "https" if options.tls_cert else "http"
        log.info("Steward listening on %s://%s:%d", scheme, options.host, options.port)
    server.run(sockets=sockets)
