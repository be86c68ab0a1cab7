"""The shared atomic writer: final mode from the start, no overwrite when refused, no debris."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from donjon.atomicfile import make_private_dir, write_bytes, write_text


def test_mode_parents_and_content(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "key.pem"
    write_bytes(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    write_text(target, "public\n", mode=0o644)
    assert target.read_text() == "public\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["key.pem"]


def test_refuses_overwrite_and_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "ca.key"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_bytes(target, b"new", overwrite=False)
    assert target.read_bytes() == b"old"


def test_cache_write_uses_given_temp_names(tmp_path: Path) -> None:
    target = tmp_path / "m.cwasm"
    write_bytes(target, b"x", durable=False, prefix=".tmp-", suffix=".cwasm")
    assert [p.name for p in tmp_path.iterdir()] == ["m.cwasm"]


def test_private_dir(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "sim"
    make_private_dir(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
