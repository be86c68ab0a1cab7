"""Platform registry and auto-selection, with fake platforms in place of hardware."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation import oids
from donjon.keep import platforms
from donjon.keep.platforms import nil
from donjon.keep.platforms.base import Platform, PlatformError


class FakePlatform:
    def __init__(self, name: str, available: bool) -> None:
        self.name = name
        self._available = available

    def key_curve(self) -> ec.EllipticCurve:
        return ec.SECP384R1()

    def available(self) -> bool:
        return self._available

    def evidence_extension(self, report_data: bytes) -> x509.UnrecognizedExtension:
        return x509.UnrecognizedExtension(oids.EVIDENCE_SIM, report_data)


def test_nil_extension_is_der_null_under_the_nil_oid() -> None:
    ext = nil.create(None).evidence_extension(bytes(64))
    assert ext.oid.dotted_string == "2.25.181619702866105806351283801535139069181.3.4"
    assert ext.value == b"\x05\x00"


def test_nil_uses_p256_and_is_always_available() -> None:
    platform = nil.create(None)
    assert isinstance(platform, Platform)
    assert platform.key_curve().name == "secp256r1"
    assert platform.available()


def test_nil_rejects_report_data_that_is_not_64_bytes() -> None:
    with pytest.raises(PlatformError, match="64 bytes, got 48"):
        nil.create(None).evidence_extension(hashlib.sha384(b"x").digest())


def test_unknown_platform_name_is_a_clear_error() -> None:
    with pytest.raises(platforms.UnknownPlatform, match=r"unknown platform 'kvm' \(known: sgx"):
        platforms.select("kvm")


def test_explicit_choice_overrides_auto_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(platforms.ENV_PLATFORM, raising=False)
    assert platforms.select("nil").name == "nil"


def test_env_variable_selects_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(platforms.ENV_PLATFORM, "NIL")
    assert platforms.select().name == "nil"


def test_explicit_unavailable_platform_is_refused_not_downgraded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(platforms, "factory", lambda name: lambda d: FakePlatform(name, False))
    with pytest.raises(platforms.PlatformUnavailable, match="'snp' is not available"):
        platforms.select("snp")


def test_auto_selection_follows_enarx_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(platforms.ENV_PLATFORM, raising=False)
    offered = {"tdx", "sim", "nil"}
    monkeypatch.setattr(
        platforms, "factory", lambda name: lambda d: FakePlatform(name, name in offered)
    )
    assert platforms.select().name == "tdx"
    offered.discard("tdx")
    assert platforms.select().name == "sim"
    offered.discard("sim")
    assert platforms.select().name == "nil"


def test_missing_module_counts_as_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(platforms.ENV_PLATFORM, raising=False)
    monkeypatch.setitem(platforms.REGISTRY, "sgx", "donjon.keep.platforms.no_such_module")
    with pytest.raises(platforms.PlatformUnavailable, match=r"no donjon\.keep\.platforms\.no_such"):
        platforms.create("sgx")


def test_state_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(platforms.ENV_STATE_DIR, str(tmp_path))
    assert platforms.default_state_dir() == tmp_path
