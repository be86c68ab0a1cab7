"""Draining before exit: finish what is in flight, answer anything new with 503 + Retry-After.

When a Steward is told to stop (SIGTERM from Kubernetes, systemd or the
worker supervisor), its address may still be in a load balancer for a few
seconds. During that window it keeps its socket open and answers new requests
with ``503 shutting-down`` and ``Retry-After`` so that clients retry another
replica, while the requests already in flight finish normally. ``/healthz``
still answers (the process is alive); ``/readyz`` says 503.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from donjon.steward.errors import ShuttingDown
from donjon.steward.problems import from_error

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Answered even while draining: liveness must not fail during a graceful stop.
ALWAYS_ANSWERED = frozenset({"/healthz"})
RETRY_AFTER_SECONDS = 2


class Lifecycle:
    """The drain flag and the count of requests in flight, shared by the app and its server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._drain_started: float | None = None

    @property
    def draining(self) -> bool:
        return self._drain_started is not None

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def begin_drain(self) -> bool:
        """Start draining; False if it had already started."""
        with self._lock:
            if self._drain_started is not None:
                return False
            self._drain_started = time.monotonic()
            return True

    def drained_for(self) -> float:
        started = self._drain_started
        return 0.0 if started is None else time.monotonic() - started

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


class DrainMiddleware:
    """Counts requests in flight; refuses new ones once draining has begun."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.lifecycle.draining and scope.get("path") not in ALWAYS_ANSWERED:
            error = ShuttingDown(
                "this Steward is shutting down: retry, another replica will answer"
            )
            response = from_error(error)
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        self.lifecycle.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.lifecycle.leave()
