"""Helpers for the examples' tests: build an example, package it, run it as a server.

Every example is built from its committed source through ``donjon.toolchain``
(cached by digest), the way ``scripts/build-examples`` builds it.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from donjon import toolchain
from support.keepproc import collect_lines, donjon_cmd, wait_for_output

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
RUN_TIMEOUT = 60


def example_source(name: str) -> Path:
    found = sorted((EXAMPLES / name).glob("main.*"))
    sources = [p for p in found if p.suffix in (".c", ".cpp", ".rs", ".zig", ".ts")]
    assert len(sources) == 1, f"examples/{name} should have exactly one main.<ext>: {found}"
    return sources[0]


def build_example(name: str) -> Path:
    """Build one example the way scripts/build-examples does; skip if its toolchain is missing."""
    src = example_source(name)
    try:
        if src.suffix == ".cpp":
            return toolchain.build_c(src, cplusplus=True, flags=["-fno-exceptions"])
        return toolchain.build(src)
    except toolchain.ToolchainMissing as exc:
        pytest.skip(str(exc))


def make_package(root: Path, name: str, wasm: Path, config: str | None = None) -> Path:
    """A package dir with the built wasm and the example's own config (or ``config``)."""
    pkg = root / name
    pkg.mkdir(parents=True)
    shutil.copyfile(wasm, pkg / "main.wasm")
    if config is None:
        for config_name in ("Donjon.toml", "Enarx.toml"):
            if (EXAMPLES / name / config_name).is_file():
                shutil.copyfile(EXAMPLES / name / config_name, pkg / config_name)
    else:
        (pkg / "Donjon.toml").write_text(config)
    return pkg


def local_listener(config: str, port: int = 0, prot: str | None = None) -> str:
    """The example's config with its listener moved to 127.0.0.1 on ``port`` (0: any free one)."""
    config = re.sub(r"(?m)^port = \d+", f'addr = "127.0.0.1"\nport = {port}', config)
    if prot is not None:
        config = re.sub(r'(?m)^prot = "\w+"', f'prot = "{prot}"', config)
    return config


class Conn:
    """A client connection (plain or TLS) that reads lines and HTTP responses."""

    def __init__(
        self, port: int, cafile: Path | None = None, timeout: float = 10, rcvbuf: int = 0
    ) -> None:
        raw = socket.socket()
        raw.settimeout(timeout)
        if rcvbuf:  # a small receive window: a client that stops reading fills up fast
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.connect(("127.0.0.1", port))
        if cafile is None:
            self.sock: socket.socket = raw
        else:
            ctx = ssl.create_default_context(cafile=str(cafile))
            self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def line(self) -> str:
        while b"\n" not in self.buf:
            if not self._fill():
                raise AssertionError(f"connection closed before a full line: {self.buf!r}")
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode() + "\n"

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        """One HTTP response: status, headers (lower-case names) and the body."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise AssertionError(f"connection closed before a full response: {self.buf!r}")
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        version, status, _ = status_line.split(" ", 2)
        assert version == "HTTP/1.1"
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        length = 0 if head_only else int(headers["content-length"])
        while len(self.buf) < length:
            if not self._fill():
                raise AssertionError("connection closed inside a response body")
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status), headers, body

    def closed_by_peer(self) -> bool:
        """True when the server has closed the connection (and sent nothing more)."""
        try:
            return not self.buf and not self._fill()
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()


class RunWasmServer:
    """A ``donjon run-wasm --listen`` server: the plain-TCP way to run a server module."""

    def __init__(self, wasm: Path, port: int, env: dict[str, str], ready: str) -> None:
        self.proc = subprocess.Popen(
            donjon_cmd("run-wasm", "--listen", f"127.0.0.1:{port}", str(wasm)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.out: list[str] = []
        self._reader = collect_lines(self.proc.stdout, self.out)
        wait_for_output(self.out, ready, self.proc, RUN_TIMEOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
