"""donjon.toolchain.build_assemblyscript: missing node/npm and bad source are one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from donjon import toolchain


def test_missing_node_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(toolchain.ToolchainMissing) as caught:
        toolchain.build_assemblyscript(Path("main.ts"))
    assert str(caught.value) == ("no AssemblyScript toolchain: install node and npm (Debian: npm)")


def test_a_compile_error_is_one_line_naming_the_file(tmp_path: Path) -> None:
    src = tmp_path / "broken.ts"
    src.write_text("let x: i32 = ;\n")
    try:
        toolchain.assemblyscript_prefix()
    except toolchain.ToolchainMissing as exc:
        pytest.skip(str(exc))
    with pytest.raises(toolchain.BuildFailed) as caught:
        toolchain.build(src)  # by suffix: .ts is AssemblyScript
    message = str(caught.value)
    assert message.startswith(f"{src}: build failed: ")
    assert "\n" not in message
    assert not list(toolchain.default_cache_dir().glob("broken-*.wasm"))
