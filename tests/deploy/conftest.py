"""Fixtures for deploying from a registry: a real ``docker-registry`` and its credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
