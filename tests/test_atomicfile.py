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


def test_without_make_parents_a_missing_directory_is_named(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "x.pem"
    with pytest.raises(FileNotFoundError) as caught:
        write_bytes(target, b"x", make_parents=False)
    assert caught.value.filename == str(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_an_error_names_the_target_never_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def refuse(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link", src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    target = tmp_path / "x.pem"
    with pytest.raises(OSError) as caught:
        write_bytes(target, b"x")
    assert caught.value.filename == str(target)
    assert ".tmp" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # and the temporary file is gone
