"""Fixtures for deploying from a registry: a real ``docker-registry`` and its credentials."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_harness import SecretSteward, running_steward

from support import registry as registries
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
    extra = ["--admin-token-file", str(token), "--secrets-kek-file", str(kek)]
    with running_steward(tmp, tmp / "dev.toml", *extra) as (url, cert):
        yield SecretSteward(url, cert, token, tmp / "state", tmp / "steward.log")


@pytest.fixture
def host(tmp_path: Path, registry: Registry, sim_state: Path) -> dict[str, str]:
    """The environment of the untrusted host's processes: its own HOME, cache and tmp."""
    home = tmp_path / "host"
    (home / "tmp").mkdir(parents=True)
    return {
        **registry.env(),
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / "cache"),
        "TMPDIR": str(home / "tmp"),
        "DONJON_PLATFORM": "sim",
        "DONJON_STATE_DIR": str(sim_state),
    }
