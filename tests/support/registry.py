"""A real OCI registry on 127.0.0.1 for tests and benches: Debian's ``docker-registry``.

It is the CNCF distribution v2 registry, started with a generated config: TLS
with a throwaway certificate (also the clients' CA bundle) and htpasswd auth
(bcrypt, made by ``htpasswd`` from apache2-utils). ``scripts/install-system-deps``
installs both; without them, callers skip with :data:`MISSING`.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from support.net import free_port, stop, wait_port
from support.pki import write_self_signed

USERNAME = "donjon"
PASSWORD = "registry-test-password"
REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
HTPASSWD_BIN = shutil.which("htpasswd")


def missing() -> str | None:
    """Why a registry cannot be started here, or None."""
    if not Path(REGISTRY_BIN).exists():
        return "docker-registry (Debian package docker-registry) is not installed"
    if HTPASSWD_BIN is None:
        return "htpasswd (Debian package apache2-utils) is not installed"
    return None


@dataclass
class Registry:
    host: str  # "127.0.0.1:PORT"
    ca: Path  # PEM the clients trust
    storage: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def ref(self, repository: str, suffix: str = "") -> str:
        return f"oci://{self.host}/{repository}{suffix}"

    def blob_path(self, digest: str) -> Path:
        hexd = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def env(self) -> dict[str, str]:
        """What a ``donjon`` child process needs to reach this registry."""
        return {
            "DONJON_REGISTRY_CA": str(self.ca),
            "DONJON_REGISTRY_USERNAME": USERNAME,
            "DONJON_REGISTRY_PASSWORD": PASSWORD,
        }

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"https://{self.host}",
            verify=ssl.create_default_context(cafile=str(self.ca)),
            auth=(USERNAME, PASSWORD),
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop(self.proc)


def start(root: Path | None = None) -> Registry:
    root = root or Path(tempfile.mkdtemp(prefix="donjon-registry-"))
    root.mkdir(parents=True, exist_ok=True)
    cert, key = write_self_signed(root, cert_name="registry.pem", key_name="registry.key")
    assert HTPASSWD_BIN is not None
    htpasswd = subprocess.run(
        [HTPASSWD_BIN, "-Bbn", USERNAME, PASSWORD], capture_output=True, check=True
    ).stdout
    (root / "htpasswd").write_bytes(htpasswd)
    storage = root / "storage"
    storage.mkdir(exist_ok=True)
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: donjon-test-secret\n"
        f"  tls:\n    certificate: {cert}\n    key: {key}\n"
        f"auth:\n  htpasswd:\n    realm: donjon-test\n    path: {root / 'htpasswd'}\n"
    )
    log = root / "registry.log"
    with log.open("wb") as out:
        # The registry reads REGISTRY_* variables as config overrides (REGISTRY_AUTH_FILE...).
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=out, stderr=out, env=env
        )
    wait_port(port, proc, why=lambda: log.read_text()[-800:])
    return Registry(f"127.0.0.1:{port}", cert, storage, proc, log)
