"""A TPM 2.0 simulator (swtpm) and a fake Azure IMDS, both on 127.0.0.1, for the azure tests.

``Swtpm`` starts Debian's ``swtpm`` in socket mode in a temporary directory;
its TCTI string (``swtpm:host=127.0.0.1,port=N``) is what ``DONJON_TPM_TCTI``
takes. ``FakeImds`` answers THIM and ``/acc/tdquote`` as Azure's IMDS does.
Nothing here ever talks to the real IMDS address.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from support.net import free_port, stop, wait_port


def require_swtpm() -> None:
    """Skip, saying what is missing, unless swtpm and tpm2-pytss are both installed."""
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (scripts/install-system-deps installs it)")
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"tpm2-pytss is not installed ({exc}); pip install -e '.[dev]'")


def _free_pair() -> int:
    """A port P on 127.0.0.1 such that P and P + 1 were both free a moment ago."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise AssertionError("no two adjacent free ports on 127.0.0.1")


class Swtpm:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # The swtpm TCTI talks to the control channel on port + 1.
        self.port = _free_pair()
        self.ctrl = self.port + 1
        self.log = directory / "swtpm.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        cmd = [
            "swtpm", "socket", "--tpm2",
            "--tpmstate", f"dir={self.directory}",
            "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
            "--ctrl", f"type=tcp,port={self.ctrl},bindaddr=127.0.0.1",
            "--flags", "not-need-init,startup-clear",
            "--log", f"file={self.log}",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port, self.proc, timeout=20, why=self._why)

    def _why(self) -> str:
        return self.log.read_text() if self.log.exists() else "no swtpm log"

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None


@contextmanager
def running_swtpm(directory: Path) -> Iterator[Swtpm]:
    require_swtpm()
    tpm = Swtpm(directory)
    tpm.start()
    try:
        yield tpm
    finally:
        tpm.stop()


class FakeImds:
    """THIM (``GET /metadata/THIM/amd/certification``) and ``POST /acc/tdquote``."""

    def __init__(self) -> None:
        self.thim: dict[str, Any] | None = None
        self.thim_status = 200
        #: TDREPORT -> quote; None answers 500.
        self.quote_of: Callable[[bytes], bytes] | None = None
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.td_reports: list[bytes] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any] | None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, dict(self.headers)))
                if self.path != "/metadata/THIM/amd/certification" or fake.thim is None:
                    self._send(404, None)
                elif self.headers.get("Metadata") != "true":
                    self._send(400, {"error": "Metadata header required"})
                else:
                    self._send(fake.thim_status, fake.thim)

            def do_POST(self) -> None:
                fake.requests.append(("POST", self.path, dict(self.headers)))
                size = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(size))
                if self.path != "/acc/tdquote" or fake.quote_of is None:
                    self._send(500, None)
                    return
                text = body["report"]
                report = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
                fake.td_reports.append(report)
                quote = fake.quote_of(report)
                encoded = base64.urlsafe_b64encode(quote).rstrip(b"=").decode()
                self._send(200, {"quote": encoded})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeImds:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
