"""Bad input to ``donjon run`` and ``donjon config check`` leaves nothing behind and says
what was wrong in Donjon's words, every problem at once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

PROGRAM = Path(__file__).resolve().parents[1] / "programs" / "wat" / "says_fail.wat"


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", *args],
        capture_output=True, text=True, check=False, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("wasm", "message"),
    [
        (b"", "empty file (0 bytes), not a WebAssembly module"),
        (b"MZ\x90\x00", "not a WebAssembly module (bad magic number)"),
        (b"\0asm\x01\0\0\0\x05", "invalid WebAssembly module: "),
    ],
)
def test_a_bad_module_is_refused_before_any_certificate(
    tmp_path: Path, wasm: bytes, message: str
) -> None:
    package = tmp_path / "app"
    package.mkdir()
    (package / "main.wasm").write_bytes(wasm)
    cert = tmp_path / "cert.pem"
    proc = run_cli("run", str(package), "--export-cert", str(cert))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"donjon: error: {package / 'main.wasm'}: {message}")
    assert proc.stderr.count("\n") == 1, proc.stderr  # no platform or certificate line before
    assert not cert.exists()


def test_export_cert_never_creates_a_directory(
    tmp_path: Path, build_wasm: Callable[[Path], Path]
) -> None:
    package = tmp_path / "app"
    package.mkdir()
    shutil.copyfile(build_wasm(PROGRAM), package / "main.wasm")
    target = tmp_path / "missing" / "dir" / "x.pem"
    proc = run_cli("run", str(package), "--export-cert", str(target))
    assert proc.returncode == 2
    assert proc.stderr == (
        f"donjon: error: --export-cert {target}: the directory {target.parent} does not exist\n"
    )
    assert not (tmp_path / "missing").exists()


def test_config_check_json_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "Donjon.toml").write_text(
        '[[files]]\nkindd = "stdin"\n[[files]]\nkind = "stdout"\nportt = 3\n'
    )
    proc = run_cli("config", "check", str(tmp_path), "--json")
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert data["valid"] is False
    assert [p["message"] for p in data["problems"]] == [
        "unknown field 'kindd' (did you mean 'kind'?)",
        "unknown field 'portt' (valid: kind, name)",
    ]
    plain = run_cli("config", "check", str(tmp_path))
    assert plain.returncode == 2
    lines = plain.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("donjon: error: ") for line in lines)
