"""Trust that holds (issue 9 §1): challenges are accepted once and in time, and a
revoked key stays revoked, across restarts and across Stewards sharing one store.

The real attestation engine judges real simulated-TEE evidence (SNP layout, a
locally generated hierarchy); each attack is run as an attacker would run it,
and must fail with its own error.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from steward_harness import RunningSteward, StewardFactory

from donjon.attestation import Policy, TrustStore, oids, verify_csr
from donjon.attestation.claims import AttestationResult, WorkloadClaims
from donjon.keep import identity
from donjon.keep.platforms import sim as sim_platform
from donjon.keep.platforms.base import Platform
from donjon.keep.sim import products
from donjon.keep.sim import state as sim_state

PKCS10 = {"Content-Type": "application/pkcs10"}
#: After the module's simulated hierarchy is made (it is valid from its creation).
CLAIMS = WorkloadClaims(bytes(range(32)), b"", "fresh-demo")
REASONS = ["key-compromise", "superseded", "unspecified", "cessation-of-operation"]


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def sim_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated TEE (Milan layout) made once for the module: Donjon's state dir."""
    home = tmp_path_factory.mktemp("sim-home")
    product = products.Product.parse("Milan")
    default = products.DEFAULT_TCB
    tcb = default[product] if isinstance(default, dict) else default
    config = sim_state.SimConfig(product, tcb, sim_state.random_chip_id(product))
    sim_state.init(home / "sim", config)
    return home


@pytest.fixture
def t0(sim_home: Path) -> datetime:
    """A Steward time inside the simulated hierarchy's validity (it starts when it is made)."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)


@pytest.fixture
def platform(sim_home: Path) -> Platform:
    return sim_platform.create(sim_home)


def sim_policy(sim_home: Path, tmp_path: Path, extra: str = "") -> Policy:
    ark = sim_home / "sim" / "ark.pem"
    shutil.copy(ark, tmp_path / "sim-ark.pem")
    text = f'[sim]\ntrust = "sim-ark.pem"\n{extra}'
    return Policy.from_toml(text, source="fresh.toml", base_dir=tmp_path)


def csr_for(
    platform: Platform, nonce: bytes | None, key: ec.EllipticCurvePrivateKey | None = None
) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = key or identity.generate_key(platform)
    claims = replace(CLAIMS, nonce=nonce)
    return identity.build_csr(key, claims, platform).public_bytes(Encoding.DER), key


def challenge(steward: RunningSteward) -> bytes:
    response = steward.client.post("/v1/challenge")
    assert response.status_code == 200, response.text
    return bytes.fromhex(response.json()["nonce"])


def attest(steward: RunningSteward, csr: bytes) -> httpx.Response:
    return steward.client.post("/v1/attest", content=csr, headers=PKCS10)


def problem(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, str(body.get("check")), str(body.get("detail"))


@pytest.fixture
def engine_steward(
    start_steward: StewardFactory, sim_home: Path, tmp_path: Path, store_url: str, t0: datetime
) -> Iterator[Callable[..., RunningSteward]]:
    """Stewards with the real engine and a sim policy; all on the one ``store_url``."""

    def start(*, clock: Clock | None = None, extra: str = "") -> RunningSteward:
        return start_steward(
            verifier=verify_csr,
            policy=sim_policy(sim_home, tmp_path, extra),
            trust=TrustStore(),
            clock=clock or Clock(t0),
            store_url=store_url,
        )

    yield start


# --- the challenge -----------------------------------------------------------------------------


def test_a_challenge_is_56_bytes_32_of_them_random_with_an_expiry(
    engine_steward: Callable[..., RunningSteward], t0: datetime
) -> None:
    steward = engine_steward()
    first = steward.client.post("/v1/challenge")
    second = steward.client.post("/v1/challenge")
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    body = first.json()
    nonce, other = bytes.fromhex(body["nonce"]), bytes.fromhex(second.json()["nonce"])
    # 32 random bytes, the expiry (big-endian Unix seconds), a 16-byte MAC.
    assert len(nonce) == 56 and nonce[:32] != other[:32]
    assert int.from_bytes(nonce[32:40], "big") == int((t0 + timedelta(seconds=120)).timestamp())
    assert body["lifetime_seconds"] == 120
    assert datetime.fromisoformat(body["expires_at"]) == t0 + timedelta(seconds=120)
    bad = steward.client.post("/v1/challenge", content=b"please")
    assert bad.status_code == 400


def test_fresh_evidence_is_accepted_once(
    engine_steward: Callable[..., RunningSteward], platform: Platform
) -> None:
    steward = engine_steward()
    csr, _ = csr_for(platform, challenge(steward))
    first = attest(steward, csr)
    assert first.status_code == 200, first.text
    replay = attest(steward, csr)
    assert problem(replay)[:2] == (403, "freshness.nonce_used")
    assert "already used" in problem(replay)[2]


@pytest.mark.parametrize("forge", ["random", "longer_expiry", "flipped_mac"])
def test_a_nonce_the_steward_never_gave_is_refused(
    engine_steward: Callable[..., RunningSteward], platform: Platform, forge: str
) -> None:
    steward = engine_steward()
    real = challenge(steward)
    forged = {
        "random": bytes(range(56)),
        # The attacker pushes the expiry a day later: the MAC no longer matches.
        "longer_expiry": real[:32]
        + (int.from_bytes(real[32:40], "big") + 86400).to_bytes(8, "big")
        + real[40:],
        "flipped_mac": real[:-1] + bytes([real[-1] ^ 1]),
    }[forge]
    csr, _ = csr_for(platform, forged)
    status, check, detail = problem(attest(steward, csr))
    assert (status, check) == (403, "freshness.nonce_unknown")
    assert "not given by this Steward" in detail


def test_an_expired_nonce_is_refused(
    engine_steward: Callable[..., RunningSteward], platform: Platform, t0: datetime
) -> None:
    clock = Clock(t0)
    steward = engine_steward(clock=clock)
    nonce = challenge(steward)
    clock.now = t0 + timedelta(seconds=120)  # the expiry itself is too late
    csr, _ = csr_for(platform, nonce)
    assert problem(attest(steward, csr))[:2] == (403, "freshness.nonce_expired")


def test_the_nonce_lifetime_comes_from_the_policy(
    engine_steward: Callable[..., RunningSteward], platform: Platform, t0: datetime
) -> None:
    clock = Clock(t0)
    steward = engine_steward(clock=clock, extra='[freshness]\nnonce_lifetime = "10s"\n')
    response = steward.client.post("/v1/challenge")
    assert response.json()["lifetime_seconds"] == 10
    nonce = bytes.fromhex(response.json()["nonce"])
    clock.now = t0 + timedelta(seconds=11)
    csr, _ = csr_for(platform, nonce)
    assert problem(attest(steward, csr))[:2] == (403, "freshness.nonce_expired")


def test_donjon_evidence_without_a_challenge_is_refused_by_default(
    engine_steward: Callable[..., RunningSteward], platform: Platform
) -> None:
    steward = engine_steward()
    csr, _ = csr_for(platform, None)
    status, check, detail = problem(attest(steward, csr))
    assert (status, check) == (403, "freshness.nonce")
    assert "no challenge nonce" in detail


def test_optional_freshness_must_be_chosen_and_then_accepts(
    engine_steward: Callable[..., RunningSteward], platform: Platform
) -> None:
    steward = engine_steward(extra='[freshness]\ndonjon = "optional"\n')
    csr, _ = csr_for(platform, None)
    response = attest(steward, csr)
    assert response.status_code == 200, response.text
    assert steward.client.get("/").json()["policy"]["freshness"]["donjon"] == "optional"


def test_a_nonce_from_one_steward_is_accepted_once_by_all_that_share_its_store(
    engine_steward: Callable[..., RunningSteward], platform: Platform
) -> None:
    a, b = engine_steward(), engine_steward()
    nonce = challenge(a)
    csr, _ = csr_for(platform, nonce)
    assert attest(b, csr).status_code == 200  # B knows A's nonce: one store
    assert problem(attest(a, csr))[:2] == (403, "freshness.nonce_used")
    assert problem(attest(b, csr))[:2] == (403, "freshness.nonce_used")


def _race(stewards: list[RunningSteward], csr: bytes) -> list[int]:
    """POST one CSR to every Steward at the same moment; the status codes, sorted."""
    statuses: list[int] = []
    lock = threading.Lock()
    gate = threading.Barrier(len(stewards))

    def post(steward: RunningSteward) -> None:
        gate.wait()
        code = attest(steward, csr).status_code
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=post, args=(s,)) for s in stewards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(statuses)


def test_two_stewards_racing_on_one_nonce_accept_it_once(
    engine_steward: Callable[..., RunningSteward], platform: Platform
) -> None:
    a, b = engine_steward(), engine_steward()
    for _ in range(3):
        csr, _ = csr_for(platform, challenge(a))
        assert _race([a, b, a, b, a, b], csr) == [200, 403, 403, 403, 403, 403]


def test_a_nonce_from_a_steward_with_another_store_is_unknown(
    start_steward: StewardFactory,
    engine_steward: Callable[..., RunningSteward],
    platform: Platform,
    sim_home: Path,
    tmp_path: Path,
    t0: datetime,
) -> None:
    here = engine_steward()
    elsewhere = start_steward(
        verifier=verify_csr,
        policy=sim_policy(sim_home, tmp_path),
        trust=TrustStore(),
        clock=Clock(t0),
        store_url=f"sqlite:///{tmp_path / 'other.db'}",
    )
    csr, _ = csr_for(platform, challenge(elsewhere))
    assert problem(attest(here, csr))[:2] == (403, "freshness.nonce_unknown")


# --- revoked keys stay revoked -------------------------------------------------------------------


def _serial(response: httpx.Response) -> str:
    return str(response.json()["issued"][0]["serial"])


def _revoke(steward: RunningSteward, serial: str, reason: str) -> None:
    response = steward.client.post(
        "/v1/revoke",
        json={"serial": serial, "reason": reason},
        headers={"Authorization": "Bearer s3cret-token"},
    )
    assert response.status_code == 200, response.text


def _attest_json(steward: RunningSteward, csr: bytes) -> httpx.Response:
    return steward.client.post(
        "/v1/attest", content=csr, headers={**PKCS10, "Accept": "application/json"}
    )


@pytest.mark.parametrize("reason", REASONS)
def test_a_revoked_key_is_never_certified_again(
    engine_steward: Callable[..., RunningSteward], platform: Platform, reason: str
) -> None:
    steward = engine_steward()
    csr, key = csr_for(platform, challenge(steward))
    issued = _attest_json(steward, csr)
    assert issued.status_code == 200, issued.text
    serial = _serial(issued)
    _revoke(steward, serial, reason)
    # The attacker copied the key and the CSR: a replay, then fresh evidence for the key.
    replay = attest(steward, csr)
    assert problem(replay)[:2] == (403, "revoked.key") and serial in problem(replay)[2]
    renewed, _ = csr_for(platform, challenge(steward), key=key)
    status, check, detail = problem(attest(steward, renewed))
    assert (status, check) == (403, "revoked.key")
    assert f"revoked certificate serial {serial}" in detail
    # A new key is fine.
    fresh, _ = csr_for(platform, challenge(steward))
    assert attest(steward, fresh).status_code == 200


def test_a_revoked_key_stays_revoked_after_a_restart_and_on_other_stewards(
    engine_steward: Callable[..., RunningSteward], platform: Platform
) -> None:
    first = engine_steward()
    csr, key = csr_for(platform, challenge(first))
    serial = _serial(_attest_json(first, csr))
    _revoke(first, serial, "key-compromise")
    first.client.close()
    # A restarted Steward, and a replica, on the same store.
    restarted, replica = engine_steward(), engine_steward()
    for steward in (restarted, replica):
        again, _ = csr_for(platform, challenge(steward), key=key)
        assert problem(attest(steward, again))[:2] == (403, "revoked.key")


def test_revoking_one_certificate_revokes_every_certificate_of_its_key(
    engine_steward: Callable[..., RunningSteward], platform: Platform
) -> None:
    steward = engine_steward()
    csr1, key = csr_for(platform, challenge(steward))
    csr2, _ = csr_for(platform, challenge(steward), key=key)
    one, two = _serial(_attest_json(steward, csr1)), _serial(_attest_json(steward, csr2))
    _revoke(steward, one, "key-compromise")
    crl = x509.load_der_x509_crl(steward.client.get("/v1/crl").content)
    listed = {format(entry.serial_number, "x") for entry in crl}
    assert {one, two} <= listed


def test_an_issued_certificate_carries_the_nonce_it_answered(
    engine_steward: Callable[..., RunningSteward], platform: Platform
) -> None:
    steward = engine_steward()
    nonce = challenge(steward)
    csr, _ = csr_for(platform, nonce)
    response = _attest_json(steward, csr)
    assert response.status_code == 200, response.text
    assert response.json()["issued"][0]["claims"]["workload"]["nonce"] == nonce.hex()
    cert = x509.load_pem_x509_certificate(response.json()["issued"][0]["certificate"].encode())
    ext = cert.extensions.get_extension_for_oid(oids.ATTESTATION_RESULT).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    result = AttestationResult.from_der(ext.value)
    assert result.workload is not None and result.workload.nonce == nonce
    assert "evidence-not-fresh" not in result.advisories
