"""The simulator's state directory: permissions, strict loading, reset and reissue."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from donjon.atomicfile import write_bytes
from donjon.errors import UsageError
from donjon.keep.sim import state
from donjon.keep.sim.errors import SimAlreadyInitialised, SimNotInitialised, SimStateCorrupt
from donjon.keep.sim.products import Product, TcbVersion, parse_tcb


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_private(sim_template: Path) -> None:
    assert mode(sim_template) == 0o700
    for name in ("ark", "ask", "vcek"):
        assert mode(sim_template / f"{name}.key") == 0o600
        assert mode(sim_template / f"{name}.pem") == 0o644


def test_init_refuses_to_overwrite(sim_state_dir: Path) -> None:
    directory = sim_state_dir / "sim"
    loaded = state.load(directory)
    with pytest.raises(SimAlreadyInitialised, match="already exists"):
        state.init(directory, loaded.config)


def test_load_missing(tmp_path: Path) -> None:
    with pytest.raises(SimNotInitialised, match="not initialised"):
        state.load(tmp_path / "sim")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "blue"}, "unknown field 'colour'"),
        ({"version": 2}, "unsupported state version 2"),
        ({"product": "Naples"}, "unknown AMD product line 'Naples'"),
        ({"tcb": {"bl": 300, "tee": 0, "snp": 1, "ucode": 1}}, "TCB bl=300 is out of range"),
        ({"tcb": {"bl": "x"}}, "tcb must map names to integers"),
        ({"chip_id": "zz"}, "sim.json"),
        ({"report_version": 4}, "report version"),
    ],
)
def test_corrupt_config_names_the_file(
    sim_state_dir: Path, change: dict[str, object], message: str
) -> None:
    path = sim_state_dir / "sim" / "sim.json"
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))
    with pytest.raises(SimStateCorrupt, match=message) as info:
        state.load(sim_state_dir / "sim")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_not_json(sim_state_dir: Path) -> None:
    (sim_state_dir / "sim" / "sim.json").write_text("{")
    with pytest.raises(SimStateCorrupt, match=r"sim\.json: unreadable"):
        state.load(sim_state_dir / "sim")


def test_key_that_does_not_match_the_vcek(sim_state_dir: Path) -> None:
    directory = sim_state_dir / "sim"
    (directory / "vcek.key").write_bytes((directory / "ark.key").read_bytes())
    with pytest.raises(SimStateCorrupt, match=r"vcek.key: not an EC P-384 key"):
        state.load(directory)


def test_chip_id_that_does_not_match_the_vcek(sim_state_dir: Path) -> None:
    path = sim_state_dir / "sim" / "sim.json"
    data = json.loads(path.read_text())
    data["chip_id"] = "ee" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(SimStateCorrupt, match="hwID does not match chip_id"):
        state.load(sim_state_dir / "sim")


def test_missing_certificate(sim_state_dir: Path) -> None:
    (sim_state_dir / "sim" / "ask.pem").unlink()
    with pytest.raises(SimStateCorrupt, match=r"ask.pem: missing"):
        state.load(sim_state_dir / "sim")


def test_reissue_vcek_keeps_the_roots(sim_state_dir: Path) -> None:
    directory = sim_state_dir / "sim"
    before = state.load(directory)
    after = state.reissue_vcek(directory, TcbVersion(bl=4, tee=1, snp=22, ucode=211))
    assert after.ark == before.ark and after.ask == before.ask
    assert after.vcek.public_key() != before.vcek.public_key()
    ucode = after.vcek.extensions.get_extension_for_oid(
        x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.8")
    ).value
    assert isinstance(ucode, x509.UnrecognizedExtension)
    assert ucode.value == bytes.fromhex("020200d3")  # INTEGER 211
    assert state.load(directory).config.tcb == TcbVersion(bl=4, tee=1, snp=22, ucode=211)


def test_reset(sim_state_dir: Path) -> None:
    directory = sim_state_dir / "sim"
    assert state.reset(directory) is True
    assert not directory.exists()
    assert state.reset(directory) is False


def test_reset_refuses_foreign_files(sim_state_dir: Path) -> None:
    directory = sim_state_dir / "sim"
    (directory / "thesis.tex").write_text("years of work")
    with pytest.raises(SimStateCorrupt, match=r"refusing to delete.*thesis\.tex"):
        state.reset(directory)
    assert (directory / "thesis.tex").exists()


def test_tcb_parse() -> None:
    assert parse_tcb("bl=1, tee=2,snp=3 ucode=0x10", Product.GENOA) == TcbVersion(1, 2, 3, 16)
    assert parse_tcb("ucode=5", Product.TURIN).fmc == 1  # default kept for omitted fields
    with pytest.raises(UsageError, match=r"TCB bl=256 is out of range 0\.\.255"):
        parse_tcb("bl=256", Product.MILAN)
    with pytest.raises(Exception, match="fmc is a Turin SPL"):
        parse_tcb("fmc=1", Product.MILAN)
    with pytest.raises(Exception, match="expected name=value"):
        parse_tcb("microcode=1", Product.MILAN)


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
