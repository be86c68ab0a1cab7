"""The module cache is untrusted input: only entries this Donjon wrote, for this module, run.

An attacker who can write the cache directory (but not the state directory that
holds the HMAC key) plants compiled code: another module's entry under this
module's name, a hand-made entry with a correct plain SHA-256 (what the old
format checked), or an entry authenticated under another key. Each must be
discarded, with a warning, and the module recompiled from its own bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path

import pytest

from donjon.wasi import RunSpec, Stdio, StdioKind, capi, run
from donjon.wasi.cache import KEY_BYTES, KEY_NAME, MAGIC, ModuleCache, load_key
from donjon.wasi.runner import EngineFlags
from support.wat import printer


@pytest.fixture
def modules(tmp_path: Path) -> tuple[Path, Path]:
    good, evil = tmp_path / "good.wasm", tmp_path / "evil.wasm"
    good.write_bytes(printer("good"))
    evil.write_bytes(printer("EVIL"))
    return good, evil


def run_printing(module: Path, cache: Path, key_file: Path, out: Path) -> str:
    spec = RunSpec(
        module=module,
        stdout=Stdio(StdioKind.FILE, path=out),
        cache_dir=cache,
        cache_key_file=key_file,
    )
    assert run(spec).exit_code == 0
    return out.read_text()


def entry_of(module: Path, cache: Path, key_file: Path) -> Path:
    flags = EngineFlags(epoch_interruption=False)
    return Path(ModuleCache(cache, flags.key(), key_file).path_for(module.read_bytes()))


def test_another_modules_entry_under_this_name_never_runs(
    modules: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, evil = modules
    cache, key = tmp_path / "cache", tmp_path / "state" / KEY_NAME
    assert run_printing(good, cache, key, tmp_path / "1.out") == "good\n"
    assert run_printing(evil, cache, key, tmp_path / "2.out") == "EVIL\n"
    good_entry, evil_entry = entry_of(good, cache, key), entry_of(evil, cache, key)
    # The attack: the evil module's authentic entry, copied over the good one's.
    good_entry.write_bytes(evil_entry.read_bytes())
    with caplog.at_level(logging.WARNING, logger="donjon.wasi"):
        assert run_printing(good, cache, key, tmp_path / "3.out") == "good\n"
    assert "fails authentication" in caplog.text
    assert str(good) in caplog.text
    # The planted entry was replaced by the good module's own.
    caplog.clear()
    assert run_printing(good, cache, key, tmp_path / "4.out") == "good\n"
    assert "fails authentication" not in caplog.text


def test_an_entry_with_a_correct_plain_sha256_is_refused(
    modules: tuple[Path, Path], tmp_path: Path
) -> None:
    """What the old format accepted: MAGIC, SHA-256(payload), payload."""
    good, evil = modules
    cache, key = tmp_path / "cache", tmp_path / "state" / KEY_NAME
    flags = EngineFlags(epoch_interruption=False)
    with flags.engine() as engine, capi.Module.compile(engine, evil.read_bytes()) as module:
        payload = module.serialize()
    entry = entry_of(good, cache, key)
    entry.parent.mkdir(parents=True)
    entry.write_bytes(MAGIC + hashlib.sha256(payload).digest() + payload)
    assert run_printing(good, cache, key, tmp_path / "out") == "good\n"


def test_an_entry_written_under_another_key_is_refused(
    modules: tuple[Path, Path], tmp_path: Path
) -> None:
    """The attacker's own Donjon (their key) made the entry; copied into the victim's cache."""
    good, evil = modules
    theirs_cache, theirs_key = tmp_path / "theirs", tmp_path / "their-state" / KEY_NAME
    ours_cache, ours_key = tmp_path / "ours", tmp_path / "our-state" / KEY_NAME
    # With their key, they compile the evil module and rename its entry to the good one's.
    run_printing(evil, theirs_cache, theirs_key, tmp_path / "1.out")
    forged = entry_of(evil, theirs_cache, theirs_key).read_bytes()
    target = entry_of(good, ours_cache, ours_key)
    target.parent.mkdir(parents=True)
    target.write_bytes(forged)
    # Same engine and module, so the entry name matches; only the key differs.
    assert target.name == entry_of(good, theirs_cache, theirs_key).name
    assert run_printing(good, ours_cache, ours_key, tmp_path / "2.out") == "good\n"


def test_the_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / KEY_NAME
    first = load_key(path)
    assert len(first) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == first
    assert not [p for p in path.parent.iterdir() if p.name != KEY_NAME]  # no temporary left


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (lambda p: os.chmod(p, 0o644), "mode 0644 lets others read or change it"),
        (lambda p: p.write_bytes(b"short"), "holds 5 bytes"),
        (lambda p: (p.unlink(), p.symlink_to(p.parent / "elsewhere")), "symbolic link"),
    ],
)
def test_an_untrustworthy_key_turns_the_cache_off(
    modules: tuple[Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    spoil: object,
    why: str,
) -> None:
    good, _ = modules
    cache, key = tmp_path / "cache", tmp_path / "state" / KEY_NAME
    load_key(key)
    (key.parent / "elsewhere").write_bytes(b"k" * KEY_BYTES)
    assert callable(spoil)
    spoil(key)
    with caplog.at_level(logging.WARNING, logger="donjon.wasi"):
        assert run_printing(good, cache, key, tmp_path / "out") == "good\n"
    assert "module cache off for this run" in caplog.text
    assert why in caplog.text
    assert not cache.exists() or not list(cache.glob("*.cwasm"))  # nothing cached without a key


def test_run_with_module_bytes_never_reads_the_file(
    modules: tuple[Path, Path], tmp_path: Path
) -> None:
    """The Keep hands the bytes it hashed; the path only names the module."""
    good, evil = modules
    out = tmp_path / "out"
    spec = RunSpec(
        module=evil, module_bytes=good.read_bytes(), stdout=Stdio(StdioKind.FILE, path=out)
    )
    assert run(spec).exit_code == 0
    assert out.read_text() == "good\n"
