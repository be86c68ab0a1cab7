"""The ``donjon`` command itself: help, version, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


def test_unexpected_exception_is_one_line_unless_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    from donjon.cli import main as cli_main

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_main.cli, "main", explode)
    monkeypatch.delenv("DONJON_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli_main.main(["--version"])
    assert exited.value.code == 70
    monkeypatch.setenv("DONJON_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        cli_main.main(["--version"])


@pytest.mark.parametrize(
    ("args", "error", "hint"),
    [
        (
            ["run"],
            "donjon: error: run: missing argument 'PATH'",
            "donjon: hint: usage: donjon run [OPTIONS] PATH",
        ),
        (
            ["run", "--expor", "x"],
            "donjon: error: run: no such option '--expor' (did you mean '--export-cert'?)",
            None,
        ),
        (
            ["run", "--zzzz", "x"],
            "donjon: error: run: no such option '--zzzz'",
            "donjon: hint: 'donjon run --help' lists the options",
        ),
        (["rn"], "donjon: error: no such command 'rn' (did you mean 'run'?)", None),
        (
            ["steward", "serve", "--port", "abc"],
            "donjon: error: steward serve: invalid value for '--port': "
            "'abc' is not a valid integer range",
            None,
        ),
    ],
)
def test_usage_errors_are_one_line_with_a_hint_only_where_it_helps(
    args: list[str], error: str, hint: str | None
) -> None:
    proc = run_donjon(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines == [error] if hint is None else lines == [error, hint]


def test_a_group_without_its_subcommand_shows_its_help() -> None:
    proc = run_donjon("config")
    assert "donjon config init" in proc.stdout + proc.stderr
