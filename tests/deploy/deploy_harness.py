"""Types and helpers shared by the deploy tests' fixtures and tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.net import free_port, stop, wait_port
from support.pki import write_self_signed


@dataclass(frozen=True)
class SecretSteward:
    url: str
    https_ca: Path  # the Steward's HTTPS certificate (self-signed), for clients
    admin_token_file: Path
    state: Path  # its state directory (CA, audit.db with the secrets tables)
    log: Path

    def admin_args(self) -> list[str]:
        return [
            "--url", self.url, "--ca", str(self.https_ca),
            "--admin-token-file", str(self.admin_token_file),
        ]  # fmt: skip


@contextmanager
def running_steward(tmp: Path, policy: Path, *extra: str) -> Iterator[tuple[str, Path]]:
    """``donjon steward serve --dev`` with ``policy``, state in ``tmp``: (URL, HTTPS cert)."""
    cert, key = write_self_signed(tmp, cert_name="https.pem", key_name="https.key")
    port = free_port()
    cmd = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dev", "--init",
        "--dir", str(tmp / "state"), "--port", str(port), "--policy", str(policy),
        "--tls-cert", str(cert), "--tls-key", str(key), *extra,
    ]  # fmt: skip
    log_path = tmp / "steward.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc, why=lambda: f"steward did not start: {log_path.read_text()[-800:]}")
    try:
        yield f"https://localhost:{port}", cert
    finally:
        stop(proc)
