"""A compile the build cache lacks says that it runs, and keeps saying so while it does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from donjon import toolchain


def test_a_long_compile_says_it_is_still_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolchain, "HEARTBEAT_S", 0.1)
    said: list[str] = []
    slow = [sys.executable, "-c", "import time; time.sleep(0.5)"]
    toolchain._run(slow, Path("app.c"), said.append, "zig")
    assert said[0] == "compiling app.c with zig"
    assert len(said) >= 2 and all(line.startswith("still compiling app.c (") for line in said[1:])


def test_a_failed_compile_still_fails_with_its_first_line(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    bad = [sys.executable, "-c", "import sys; sys.exit('app.c:1: error: nope')"]
    with pytest.raises(toolchain.BuildFailed, match=r"app.c: build failed: app.c:1: error: nope"):
        toolchain._run(bad, Path("app.c"), said.append)
    assert said == ["compiling app.c"]


def test_only_a_cache_miss_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DONJON_BUILD_CACHE", str(tmp_path / "cache"))
    try:
        toolchain.c_compiler()
    except toolchain.ToolchainMissing as exc:
        pytest.skip(str(exc))
    c_source = tmp_path / "tiny.c"
    c_source.write_text("int main(void) { return 0; }\n")
    said: list[str] = []
    first = toolchain.build(c_source, progress=said.append)
    assert said and said[0].startswith(f"compiling {c_source}")
    said.clear()
    assert toolchain.build(c_source, progress=said.append) == first
    assert said == []  # cached: nothing slow happened
