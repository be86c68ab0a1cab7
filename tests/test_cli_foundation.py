"""The ``donjon`` command itself: help, version, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

from donjon import __version__


def run_donjon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_version_prints_package_version() -> None:
    proc = run_donjon("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"donjon, version {__version__}"


def test_help_lists_every_command_group() -> None:
    proc = run_donjon("--help")
    assert proc.returncode == 0
    for name in ("run", "run-wasm", "attest", "steward", "platform", "verify-peer", "demo"):
        assert f"  {name} " in proc.stdout


def test_unknown_command_is_one_line_error_without_traceback() -> None:
    proc = run_donjon("no-such-command")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "no-such-command" in proc.stderr
