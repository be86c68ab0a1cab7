"""configfs-tsm against a fake kernel: the happy path, races, missing pieces."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from fake_kernel import FakeConfigfs

from donjon.keep.platforms.base import PlatformUnavailable
from donjon.keep.platforms.configfs import (
    ConfigfsTsm,
    TsmError,
    TsmNoProvider,
    TsmProviderMismatch,
    TsmRace,
)

INBLOB = bytes(range(64))


def echo_provider(inblob: bytes) -> tuple[bytes, bytes]:
    return b"REPORT:" + inblob, b"AUX"


@pytest.fixture
def fake(tmp_path: Path) -> FakeConfigfs:
    return FakeConfigfs(tmp_path, "sev_guest", echo_provider)


def tsm(fake: FakeConfigfs, attempts: int = 3) -> ConfigfsTsm:
    return ConfigfsTsm(root=fake.root, fs=fake, attempts=attempts)


def test_report_round_trip(fake: FakeConfigfs) -> None:
    got = tsm(fake).report(INBLOB, providers=frozenset({"sev_guest"}), want_aux=True)
    assert got.outblob == b"REPORT:" + INBLOB
    assert got.auxblob == b"AUX"
    assert got.provider == "sev_guest"
    assert got.generation == 1  # exactly our one write
    assert fake.requests == [INBLOB]
    assert fake.leftover_entries() == []  # the entry is removed afterwards


def test_privlevel_counts_as_a_write(fake: FakeConfigfs) -> None:
    got = tsm(fake).report(INBLOB, providers=frozenset({"sev_guest"}), privlevel=2)
    assert got.generation == 2 and got.auxblob == b""


def test_race_is_retried_in_a_fresh_entry(fake: FakeConfigfs) -> None:
    raced: list[str] = []

    def other_writer(entry: Path) -> None:
        if not raced:  # only the first attempt is disturbed
            raced.append(entry.name)
            (entry / "inblob").write_bytes(b"someone else")
            fake.bump(entry)

    fake.after_outblob = other_writer
    got = tsm(fake).report(INBLOB, providers=frozenset({"sev_guest"}))
    assert got.attempts == 2 and fake.entries_made == 2
    assert got.outblob == b"REPORT:" + INBLOB
    assert fake.leftover_entries() == []


def test_persistent_race_fails_clearly(fake: FakeConfigfs) -> None:
    fake.after_outblob = fake.bump
    with pytest.raises(TsmRace, match=r"generation went 0 -> 1 -> 2 .*gave up after 3 attempts"):
        tsm(fake).report(INBLOB, providers=frozenset({"sev_guest"}))
    assert fake.entries_made == 3 and fake.leftover_entries() == []


def test_wrong_provider(tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, "tdx_guest", echo_provider)
    with pytest.raises(TsmProviderMismatch, match="provider is 'tdx_guest', expected sev_guest"):
        tsm(fake).report(INBLOB, providers=frozenset({"sev_guest"}))
    assert fake.requests == [] and fake.leftover_entries() == []


def test_missing_provider(tmp_path: Path) -> None:
    class NoProvider(FakeConfigfs):
        """The kernel answers ENXIO when no TEE driver registered (drivers/virt/coco/tsm.c)."""

        def read(self, path: Path) -> bytes:
            if path.name in ("provider", "outblob"):
                raise OSError(errno.ENXIO, "No such device or address", str(path))
            return super().read(path)

    fake = NoProvider(tmp_path, "", echo_provider)
    with pytest.raises(TsmNoProvider, match="no TEE provider: no guest attestation driver"):
        tsm(fake).report(INBLOB, providers=frozenset({"sev_guest"}))
    assert fake.leftover_entries() == []


def test_missing_configfs(tmp_path: Path) -> None:
    t = ConfigfsTsm(root=tmp_path / "nope")
    assert not t.present()
    with pytest.raises(PlatformUnavailable, match=r"nope does not exist .*Linux >= 6\.7"):
        t.report(INBLOB, providers=frozenset({"sev_guest"}))


def test_empty_outblob(tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, "sev_guest", lambda _: (b"", b""))
    with pytest.raises(TsmError, match="outblob is empty"):
        tsm(fake).report(INBLOB, providers=frozenset({"sev_guest"}))


def test_oversized_inblob_is_a_clear_error(fake: FakeConfigfs) -> None:
    with pytest.raises(TsmError, match=r"cannot write .*inblob: inblob larger than 64 bytes"):
        tsm(fake).report(bytes(65), providers=frozenset({"sev_guest"}))
    assert fake.leftover_entries() == []


def test_permission_denied_on_mkdir(tmp_path: Path) -> None:
    class Denied(FakeConfigfs):
        def mkdir(self, path: Path) -> None:
            raise PermissionError(13, "Permission denied", str(path))

    fake = Denied(tmp_path, "sev_guest", echo_provider)
    with pytest.raises(TsmError, match=r"permission denied .*root or CAP_SYS_ADMIN"):
        tsm(fake).report(INBLOB, providers=frozenset({"sev_guest"}))


def test_non_numeric_generation(fake: FakeConfigfs) -> None:
    original = fake.mkdir

    def broken(path: Path) -> None:
        original(path)
        (path / "generation").write_text("many\n")

    fake.mkdir = broken  # type: ignore[method-assign]
    with pytest.raises(TsmError, match="generation is not a number: 'many'"):
        tsm(fake).report(INBLOB, providers=frozenset({"sev_guest"}))
