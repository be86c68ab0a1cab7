"""Fixtures for the examples' tests: each example built once, a nil-platform env, servers.

The examples run the ways a user would run them: the reference wasmtime CLI,
``donjon run-wasm`` and ``donjon run`` on the ``nil`` platform.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from example_helpers import build_example

from support.keepproc import KeepProcess, keep_starter


@pytest.fixture(scope="session")
def example_wasm() -> Callable[[str], Path]:
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_example(name)
        return built[name]

    return get


@pytest.fixture(scope="session")
def donjon_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The nil platform, no Steward, and caches that stay inside the test's temp dir."""
    root = tmp_path_factory.mktemp("donjon-env")
    env = dict(os.environ)
    env.update(
        DONJON_PLATFORM="nil",
        DONJON_STATE_DIR=str(root / "state"),
        DONJON_CACHE_DIR=str(root / "cache"),
    )
    env.pop("DONJON_STEWARD_CA", None)
    return env


@pytest.fixture(scope="module")
def servers(donjon_env: dict[str, str]) -> Iterator[Callable[..., KeepProcess]]:
    """Starts ``donjon run`` servers, and kills them when the module is done."""
    with keep_starter(donjon_env) as start:
        yield start
