"""``--workers N``: N Steward processes on one socket, so verification uses every core.

The parent binds the socket, checks the configuration once (so a bad flag is
one error, not N), then spawns N workers (``multiprocessing`` spawn: each has
its own interpreter, GIL, PKCS#11 session and database pool). It restarts a
worker that dies, stops if one cannot start, and passes SIGTERM on: each
worker drains (503 + Retry-After to new requests) and finishes what it has.
Metrics add up over the workers through prometheus_client's multiprocess mode.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from types import FrameType

import uvicorn

from donjon.errors import DonjonError
from donjon.logformat import EscapingFormatter
from donjon.steward.bootstrap import StewardConfig, build_secrets, build_steward
from donjon.steward.metrics import MULTIPROC_ENV
from donjon.steward.server import ServeOptions

log = logging.getLogger("donjon.steward")

STARTUP_FAILURE = 3  # a worker's exit code when it could not build its Steward
_RESTART_PAUSE = 1.0  # seconds between restarts of a crashing worker


def worker_log_handler(pid: int) -> logging.Handler:
    """A spawned worker starts without the parent's handlers: it escapes as the parent does."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        EscapingFormatter(f"%(asctime)s %(levelname)s %(name)s[{pid}]: %(message)s")
    )
    return handler


def _worker_main(
    config: StewardConfig, options: ServeOptions, sock: socket.socket, log_level: str
) -> None:
    """One worker: build the Steward from the same configuration and serve the shared socket."""
    from donjon.steward.app import create_app
    from donjon.steward.server import serve

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        handlers=[worker_log_handler(os.getpid())],
    )
    try:
        steward, settings = build_steward(config)
        secrets = build_secrets(config, steward)
    except DonjonError as exc:
        log.error("worker could not start: %s", exc.message)
        raise SystemExit(STARTUP_FAILURE) from None
    if secrets is not None:  # Keeps present their certificate to fetch secrets
        options = replace(options, client_ca_pem=steward.ca.certificate_pem)
    try:
        serve(create_app(steward, settings, secrets=secrets), options, sockets=[sock])
    except DonjonError as exc:
        log.error("worker could not serve: %s", exc.message)
        raise SystemExit(STARTUP_FAILURE) from None
    finally:
        steward.store.close()


def bind(options: ServeOptions) -> socket.socket:
    """The listening socket the workers share (bound once, by the parent)."""
    config = uvicorn.Config(lambda: None, host=options.host, port=options.port)
    try:
        return config.bind_socket()
    except SystemExit:  # uvicorn exits on a bind error after logging it
        raise DonjonError(f"cannot listen on {options.host}:{options.port}") from None


class Supervisor:
    """Keeps N workers running until told to stop, then stops them gracefully."""

    def __init__(
        self, config: StewardConfig, options: ServeOptions, workers: int, log_level: str
    ) -> None:
        self.config = config
        self.options = options
        self.count = workers
        self.log_level = log_level
        self.stop = threading.Event()
        self.failed = False
        self._context = multiprocessing.get_context("spawn")

    def _start(self, sock: socket.socket) -> BaseProcess:
        process = self._context.Process(
            target=_worker_main,
            args=(self.config, self.options, sock, self.log_level),
            name="donjon-steward-worker",
        )
        process.start()
        log.info("started worker pid %s", process.pid)
        return process

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if not self.stop.is_set():
            log.warning("received %s: stopping %d workers gracefully", signal.Signals(sig).name,
                        self.count)  # fmt: skip
        self.stop.set()

    def run(self, sock: socket.socket) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        processes = [self._start(sock) for _ in range(self.count)]
        while not self.stop.wait(0.5):
            for index, process in enumerate(processes):
                if process.is_alive():
                    continue
                process.join()
                _mark_dead(process.pid)
                if process.exitcode == STARTUP_FAILURE:
                    log.error("worker pid %s could not start: stopping", process.pid)
                    self.failed = True
                    self.stop.set()
                    break
                log.error("worker pid %s died (exit %s): restarting", process.pid,
                          process.exitcode)  # fmt: skip
                time.sleep(_RESTART_PAUSE)
                processes[index] = self._start(sock)
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.options.drain_seconds + self.options.graceful_timeout + 5
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker pid %s did not stop in time: killed", process.pid)
                process.kill()
                process.join()
        return 1 if self.failed else 0


def _mark_dead(pid: int | None) -> None:
    if pid is not None and os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def serve_workers(
    config: StewardConfig, options: ServeOptions, workers: int, log_level: str
) -> int:
    """Check the configuration, bind, run ``workers`` processes; the exit status."""
    # Once, here: a bad flag is one error, a new CA is made once, the schema is checked once.
    from donjon.steward.app import create_app
    from donjon.steward.server import build_server

    steward, settings = build_steward(config)
    try:
        build_secrets(config, steward)  # the KEK loads; the secrets tables exist before workers
        build_server(create_app(steward, settings), options)  # the TLS files load
    finally:
        steward.store.close()
    config = replace(config, init=False)
    sock = bind(options)
    metrics_dir = tempfile.mkdtemp(prefix="donjon-steward-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir  # read by the spawned workers' prometheus_client
    scheme = "https" if options.tls_cert else "http"
    host, port = sock.getsockname()[:2]
    log.info("Steward listening on %s://%s:%d with %d workers", scheme, host, port, workers)
    try:
        return Supervisor(config, options, workers, log_level).run(sock)
    finally:
        sock.close()
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
