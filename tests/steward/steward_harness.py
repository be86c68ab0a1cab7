"""A real Steward server on 127.0.0.1 for tests: types and the server thread."""

from __future__ import annotations

import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from donjon.steward.ca import CertificateAuthority
from donjon.steward.server import ServeOptions, build_server
from donjon.steward.service import Steward


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    context: ssl.SSLContext  # client context trusting the server cert


@dataclass
class RunningSteward:
    url: str
    steward: Steward
    client: httpx.Client
    tls: TlsFiles
    server: Any = None  # the StewardServer (its handle_exit is what SIGTERM calls)

    @property
    def ca(self) -> CertificateAuthority:
        return self.steward.ca


class ServerThread:
    def __init__(self, app: Any, tls: TlsFiles) -> None:
        options = ServeOptions(
            host="127.0.0.1", port=0, tls_cert=tls.cert, tls_key=tls.key, log_level="warning"
        )
        self.server = build_server(app, options)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test Steward did not start")
            time.sleep(0.01)
        sock = self.server.servers[0].sockets[0]
        return int(sock.getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


StewardFactory = Callable[..., RunningSteward]


class StewardProcess:
    """``donjon steward serve`` in a child process, as an operator runs it."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, url: str, context: Any) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Steward exited with {self.proc.returncode}")
            try:
                if httpx.get(url + "/", verify=context, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("Steward did not become ready")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()
