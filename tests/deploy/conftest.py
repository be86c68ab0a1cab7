"""Fixtures for deploying from a registry: a real ``docker-registry`` and its credentials."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_harness import SecretSteward

from support import registry as registries
from support.net import free_port, stop, wait_port
from support.pki import write_self_signed
from support.registry import Registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    why = registries.missing()
    if why is not None:
        pytest.skip(f"{why}; scripts/install-system-deps installs it")
    running = registries.start(tmp_path_factory.mktemp("registry"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def registry_env(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The registry's CA and credentials in this process's environment (for in-process calls)."""
    for key, value in registry.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", "/nonexistent")
    monkeypatch.setenv("HOME", str(Path("/nonexistent")))
    return registry


REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "deploy-tests-admin-token"


@pytest.fixture(scope="session")
def sim_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated SEV-SNP vendor hierarchy (``donjon sim init``)."""
    state = tmp_path_factory.mktemp("sim")
    proc = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "sim", "init", "--state-dir", str(state)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return state


@pytest.fixture(scope="session")
def secret_steward(
    tmp_path_factory: pytest.TempPathFactory, sim_state: Path
) -> Iterator[SecretSteward]:
    """``donjon steward serve --dev`` trusting the simulator, with secrets enabled."""
    tmp = tmp_path_factory.mktemp("steward")
    cert, key = write_self_signed(tmp, cert_name="https.pem", key_name="https.key")
    ark = sim_state / "sim" / "ark.pem"
    (tmp / "dev.toml").write_text(f'[nil]\nallow = true\n\n[sim]\ntrust = "{ark}"\n')
    token = tmp / "admin.token"
    token.write_text(ADMIN_TOKEN)
    token.chmod(0o600)
    kek = tmp / "kek"
    init = subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", "steward", "secrets", "kek-init", str(kek)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert kek.stat().st_mode & 0o777 == 0o600
    port = free_port()
    state = tmp / "state"
    cmd = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dev", "--init",
        "--dir", str(state), "--port", str(port), "--policy", str(tmp / "dev.toml"),
        "--tls-cert", str(cert), "--tls-key", str(key),
        "--admin-token-file", str(token), "--secrets-kek-file", str(kek),
    ]  # fmt: skip
    log_path = tmp / "steward.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port, proc, why=lambda: f"steward did not start: {log_path.read_text()[-800:]}")
    try:
        yield SecretSteward(f"https://localhost:{port}", cert, token, state, log_path)
    finally:
        stop(proc)
