"""Fixtures for the WASI host's unit tests: a preopen tree next to an "outside" tree."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostharness import SECRET, HostHarness

from donjon.wasi.api import Preopen


@pytest.fixture(autouse=True)
def _private_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The module cache's key goes to a per-test state directory, not the user's."""
    monkeypatch.setenv("DONJON_STATE_DIR", str(tmp_path / "donjon-state"))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ (the preopen) next to outside/ (what must stay unreachable)."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub" / "deeper").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (root / "hello.txt").write_bytes(b"hello\n")
    (root / "sub" / "a.txt").write_bytes(b"a\n")
    links = {
        "link_in": "hello.txt",
        "link_abs_out": str(outside / "secret.txt"),
        "link_up_out": "../outside/secret.txt",
        "link_dir_out": "../outside",
        "chain1": "chain2",
        "chain2": "sub/../link_up_out",
        "loop1": "loop2",
        "loop2": "loop1",
        "self_loop": "self_loop",
        "dangling": "nope/nothing",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    os.symlink("../../hello.txt", root / "sub" / "deeper" / "up_in")
    return root


@pytest.fixture
def harness(tree: Path) -> Iterator[HostHarness]:
    h = HostHarness([Preopen(tree, "/")], [])
    yield h
    h.close()
