"""End-to-end fixtures: a lab (simulated TEE + real Steward and Keep processes) and
the workloads, built from source once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from donjon.keep.sim.lab import Lab

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def wasm(build_wasm: Callable[[Path], Path]) -> dict[str, Path]:
    return {
        "http": build_wasm(REPO / "examples" / "http" / "main.c"),
        "chat": build_wasm(REPO / "examples" / "chat" / "main.c"),
        "echo": build_wasm(REPO / "examples" / "echo-c" / "main.c"),
        "ping": build_wasm(HERE / "programs" / "ping.c"),
    }


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as running:
        running.init_sim()
        yield running
