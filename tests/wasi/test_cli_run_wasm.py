"""``donjon run-wasm`` argument parsing and help."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from donjon.cli.run_wasm import open_listener, parse_dir, parse_env, parse_size, run_wasm
from donjon.errors import UsageError


@pytest.mark.parametrize(
    ("text", "size"),
    [("65536", 65536), ("64K", 65536), ("64M", 67108864), ("1GiB", 1073741824), ("2mb", 2097152)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-5M", "1.5G", "3X"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="--memory"):
        parse_size(text)


def test_parse_dir_and_env() -> None:
    assert parse_dir("/srv/data::/data") == ("/srv/data", "/data")
    assert parse_dir("./here") == ("./here", "./here")  # as wasmtime: same path inside
    assert parse_env("A=b=c") == ("A", "b=c")
    with pytest.raises(UsageError):
        parse_env("NOVALUE")
    with pytest.raises(UsageError):
        parse_dir("::/x")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("127.0.0.1:99999", "out of range"),
        ("127.0.0.1", "expected ADDR:PORT"),
        ("x:y", "ADDR:PORT"),
    ],
)
def test_bad_listen_address_is_a_usage_error(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        open_listener(text)


def test_help_has_examples() -> None:
    result = CliRunner().invoke(run_wasm, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "donjon run-wasm --dir ./data::/data" in result.output
