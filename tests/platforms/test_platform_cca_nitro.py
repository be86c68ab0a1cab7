"""The cca platform through a fake configfs-tsm (provider arm_cca_guest), the nitro platform
through a fake /dev/nsm that reads the request from memory as the driver does, and the
sim-cca platform; each CSR goes through the Steward's verifier."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from fake_kernel import FakeConfigfs

from donjon.attestation import Policy, TrustStore, verify_csr
from donjon.attestation.claims import WorkloadClaims
from donjon.keep.identity import build_csr, generate_key
from donjon.keep.platforms import create
from donjon.keep.platforms.base import PlatformUnavailable
from donjon.keep.platforms.cca import CcaPlatform, CcaPlatformError
from donjon.keep.platforms.configfs import ConfigfsTsm, TsmProviderMismatch
from donjon.keep.platforms.nitro import NitroPlatform, NsmDevice, NsmError
from donjon.keep.platforms.sim_cca import SimCcaPlatform
from donjon.keep.sim import cca as sim_cca
from support.nitro import FakeNitro, make_nitro

#: _IOWR(0x0A, 0, 32): 3 << 30 | 32 << 16 | 0x0A << 8 | 0, from linux/nsm.h by hand.
NSM_IOCTL_RAW = 0xC0200A00
NOW = datetime(2030, 1, 1, tzinfo=UTC)
CLAIMS = WorkloadClaims(hashlib.sha256(b"wasm").digest(), b"", "demo", nonce=b"\x42" * 32)


def csr_for(platform: Any) -> bytes:
    key = generate_key(platform)
    return build_csr(key, CLAIMS, platform).public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def sim_platform(tmp_path_factory: pytest.TempPathFactory) -> sim_cca.SimCcaState:
    return sim_cca.init(tmp_path_factory.mktemp("cca") / "sim-cca")


# --- cca through configfs-tsm --------------------------------------------------------------


def cca_platform(tmp_path: Path, state: sim_cca.SimCcaState, *, provider: str = "arm_cca_guest",
                 make: Any = None) -> tuple[CcaPlatform, FakeConfigfs]:  # fmt: skip
    rak = ec.generate_private_key(ec.SECP384R1())
    rim = hashlib.sha512(b"realm").digest()

    def answer(inblob: bytes) -> tuple[bytes, bytes]:
        if make is not None:
            return make(inblob), b""
        return sim_cca.make_token(state, rak, rim, inblob), b""

    fake = FakeConfigfs(tmp_path, provider, answer)
    platform = CcaPlatform(tsm=ConfigfsTsm(fake.root, fs=fake), linux=True, machine="aarch64")
    return platform, fake


def test_cca_csr_verifies_as_cca(tmp_path: Path, sim_platform: sim_cca.SimCcaState) -> None:
    platform, fake = cca_platform(tmp_path, sim_platform)
    assert platform.available()
    csr = csr_for(platform)
    assert len(fake.requests) == 1 and len(fake.requests[0]) == 64
    assert fake.leftover_entries() == []
    policy = Policy.from_toml(
        f'[cca]\ntrust_anchors = "{sim_platform.tastore}"\naccept_any_workload = true\n',
        source="t.toml",
        base_dir=tmp_path,
    )
    verdict = verify_csr(csr, policy=policy, trust=TrustStore(), now=NOW)
    assert verdict.accepted, verdict.error
    assert verdict.platform == "cca"
    # The realm challenge is the Donjon binding of this CSR's key and claims.
    assert {c.id for c in verdict.checks if c.passed} >= {"binding.report_data", "cca.rak_binding"}


def test_cca_wrong_provider(tmp_path: Path, sim_platform: sim_cca.SimCcaState) -> None:
    platform, _ = cca_platform(tmp_path, sim_platform, provider="sev_guest")
    with pytest.raises(TsmProviderMismatch, match="sev_guest"):
        platform.evidence_extension(b"\x00" * 64)


def test_cca_token_for_another_challenge(tmp_path: Path, sim_platform: sim_cca.SimCcaState) -> None:
    rak = ec.generate_private_key(ec.SECP384R1())

    def stale(inblob: bytes) -> bytes:
        return sim_cca.make_token(sim_platform, rak, b"\x01" * 64, b"\x99" * 64)

    platform, _ = cca_platform(tmp_path, sim_platform, make=stale)
    with pytest.raises(CcaPlatformError, match="realm challenge"):
        platform.evidence_extension(b"\x00" * 64)


def test_cca_garbage_outblob(tmp_path: Path, sim_platform: sim_cca.SimCcaState) -> None:
    platform, _ = cca_platform(tmp_path, sim_platform, make=lambda _: b"\xd9\x01\x8f\xa0")
    with pytest.raises(CcaPlatformError, match="not a CCA token"):
        platform.evidence_extension(b"\x00" * 64)


def test_cca_needs_arm64_linux(tmp_path: Path) -> None:
    fake = FakeConfigfs(tmp_path, "arm_cca_guest", lambda b: (b, b""))
    tsm = ConfigfsTsm(fake.root, fs=fake)
    assert not CcaPlatform(tsm=tsm, linux=True, machine="x86_64").available()
    assert not CcaPlatform(tsm=tsm, linux=False, machine="aarch64").available()
    with pytest.raises(PlatformUnavailable, match="arm64"):
        CcaPlatform(tsm=tsm, linux=True, machine="x86_64").evidence_extension(b"\x00" * 64)


# --- nitro through /dev/nsm --------------------------------------------------------------------


class NsmRawView(ctypes.Structure):
    """``struct nsm_raw`` as the driver reads it: two (addr, len) pairs of u64."""

    _fields_ = (("req_addr", ctypes.c_uint64), ("req_len", ctypes.c_uint64),
                ("resp_addr", ctypes.c_uint64), ("resp_len", ctypes.c_uint64))  # fmt: skip


class FakeNsm:
    """Plays the NSM driver: decodes the CBOR request, answers with a signed document."""

    def __init__(self, nitro: FakeNitro, *, answer: Any = None) -> None:
        self.nitro = nitro
        self.answer = answer
        self.requests: list[Any] = []

    def ioctl(self, fd: int, request: int, arg: Any) -> int:
        if request != NSM_IOCTL_RAW:
            raise OSError(errno.ENOTTY, "bad ioctl")
        view = NsmRawView.from_buffer_copy(bytes(arg))
        message = cbor2.loads(ctypes.string_at(view.req_addr, view.req_len))
        self.requests.append(message)
        if self.answer is not None:
            body = self.answer(message)
        else:
            user_data = message["Attestation"]["user_data"]
            body = {"Attestation": {"document": self.nitro.document(user_data=user_data)}}
        data = cbor2.dumps(body)
        assert len(data) <= view.resp_len
        ctypes.memmove(view.resp_addr, data, len(data))
        arg.response.len = len(data)  # the driver writes the length back
        return 0


def nitro_platform(fake: FakeNsm, tmp_path: Path) -> NitroPlatform:
    node = tmp_path / "nsm"
    node.write_bytes(b"")
    # A real descriptor (of the stand-in node), so that the platform's close() is real.
    device = NsmDevice(node, ioctl=fake.ioctl, opener=lambda p: os.open(p, os.O_RDONLY))
    return NitroPlatform(device=device, linux=True)


def test_nitro_csr_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nitro = make_nitro(NOW)
    fake = FakeNsm(nitro)
    platform = nitro_platform(fake, tmp_path)
    assert platform.available()
    csr = csr_for(platform)
    request = fake.requests[0]["Attestation"]
    assert len(request["user_data"]) == 64
    assert request["nonce"] is None and request["public_key"] is None
    fp = nitro.root.fingerprint(hashes.SHA256()).hex()
    monkeypatch.setattr("donjon.attestation.nitro.verify.AWS_NITRO_ROOT_SHA256", fp)
    policy = Policy.from_toml(
        "[nitro]\naccept_any_workload = true\n", source="t", base_dir=tmp_path
    )
    verdict = verify_csr(csr, policy=policy, trust=TrustStore(), now=NOW)
    assert verdict.accepted, verdict.error
    assert verdict.result is not None and "hypervisor-trusted" in verdict.result.advisories


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        (lambda m: {"Error": "InvalidArgument"}, "InvalidArgument"),
        (lambda m: {"Attestation": {}}, "no attestation document"),
        (lambda m: {"Attestation": {"document": b"\x84\x01"}}, "not an attestation document"),
    ],
)
def test_nitro_refusals(tmp_path: Path, answer: Any, fragment: str) -> None:
    platform = nitro_platform(FakeNsm(make_nitro(NOW), answer=answer), tmp_path)
    with pytest.raises(NsmError, match=fragment):
        platform.evidence_extension(b"\x00" * 64)


def test_nitro_document_for_other_data(tmp_path: Path) -> None:
    nitro = make_nitro(NOW)
    other = {"Attestation": {"document": nitro.document(user_data=b"\x07" * 64)}}
    platform = nitro_platform(FakeNsm(nitro, answer=lambda m: other), tmp_path)
    with pytest.raises(NsmError, match="user_data"):
        platform.evidence_extension(b"\x00" * 64)


def test_nitro_unavailable_without_the_device(tmp_path: Path) -> None:
    platform = NitroPlatform(device=NsmDevice(tmp_path / "missing"), linux=True)
    assert not platform.available()
    with pytest.raises(PlatformUnavailable, match="Nitro Enclave"):
        platform.evidence_extension(b"\x00" * 64)


# --- sim-cca ------------------------------------------------------------------------------------


def test_sim_cca_is_trusted_only_through_sim(tmp_path: Path) -> None:
    state = sim_cca.init(tmp_path / "sim-cca")
    platform = create("sim-cca", tmp_path)
    assert isinstance(platform, SimCcaPlatform) and platform.available()
    csr = csr_for(platform)
    as_sim = Policy.from_toml(
        f'[sim]\ncca_cpak = "{state.cpak_pem}"\naccept_any_workload = true\n',
        source="t",
        base_dir=tmp_path,
    )
    verdict = verify_csr(csr, policy=as_sim, trust=TrustStore(), now=NOW)
    assert verdict.accepted, verdict.error
    assert verdict.result is not None
    assert (verdict.result.platform, verdict.result.product) == ("sim", "cca")
    assert verdict.result.development
    assert verdict.result.measurement == platform.rim()
    refused = verify_csr(
        csr,
        policy=Policy.from_toml(
            "[cca]\naccept_any_workload = true\n", source="t", base_dir=tmp_path
        ),
        trust=TrustStore(),
        now=NOW,
    )
    assert refused.reason == "cca.trust_anchor"


def test_sim_cca_uninitialised(tmp_path: Path) -> None:
    platform = create("sim-cca", tmp_path)
    assert not platform.available()
    with pytest.raises(Exception, match="sim init --tee cca"):
        platform.evidence_extension(b"\x00" * 64)


# --- platform info ------------------------------------------------------------------------------


def test_probe_sees_a_realm_and_an_enclave(tmp_path: Path) -> None:
    from donjon.keep.platforms.probe import probe

    (tmp_path / "sys/kernel/config/tsm/report").mkdir(parents=True)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/nsm").write_bytes(b"")
    reports = {
        r.name: r for r in probe(tmp_path, system="Linux", machine="aarch64", with_providers=False)
    }
    assert reports["cca"].usable and reports["nitro"].usable
    on_x86 = {
        r.name: r for r in probe(tmp_path, system="Linux", machine="x86_64", with_providers=False)
    }
    assert not on_x86["cca"].usable
    assert "hypervisor" in reports["nitro"].summary
    bare = tmp_path / "bare"
    bare.mkdir()
    plain = {
        r.name: r for r in probe(bare, system="Linux", machine="aarch64", with_providers=False)
    }
    assert not plain["cca"].usable and not plain["nitro"].usable
