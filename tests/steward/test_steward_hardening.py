"""Trust that holds (issue 9 §3-4): a policy must pin something, a flood of bad requests
cannot fill the disk, and the Steward's secrets are private files.

Each test runs the attack or the mistake and checks the refusal, with figures.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client.parser import text_string_to_metric_families
from steward_fakes import FakeVerifier, make_csr
from steward_harness import StewardFactory

from donjon.attestation import Policy, TrustStore, verify_csr
from donjon.errors import UsageError
from donjon.steward.bootstrap import StewardConfig, build_steward
from donjon.steward.ca import CertificateAuthority
from donjon.steward.errors import StewardError
from donjon.steward.secrets_release import SecretService
from donjon.steward.secrets_store import SecretStore
from donjon.steward.secrets_vault import Kek
from donjon.steward.store import AuditStore

PKCS10 = {"Content-Type": "application/pkcs10"}
TOKEN = "admin-token-0123456789"


def _config(tmp_path: Path, policy_text: str | None, **kwargs: object) -> StewardConfig:
    policy = None
    if policy_text is not None:
        policy = tmp_path / "policy.toml"
        policy.write_text(policy_text)
    return StewardConfig(
        state_dir=tmp_path / "state",
        init=True,
        policy=policy,
        trust_dir=tmp_path,
        **kwargs,  # type: ignore[arg-type]
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- a policy that pins nothing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "the Steward needs a policy (--policy FILE)"),
        ("", "accepts no platform at all"),
        ("[snp]\n", "[snp] pins nothing (no measurement/hash, signer or id_key_digest"),
        ('[snp]\ncrl = "if-available"\nallow_debug = false\n', "[snp] pins nothing"),
        # What a guest claims about itself pins no guest (a second review of issue 9 §3).
        (
            '[snp]\nallowed_workloads = ["' + "01" * 32 + '"]\n',
            "(allowed_workloads only narrow what a guest claims)",
        ),
        ('[tdx]\nallowed_packages = ["sha256:' + "02" * 32 + '"]\n', "[tdx] pins nothing"),
    ],
)
def test_serve_refuses_a_policy_that_pins_nothing(
    tmp_path: Path, text: str | None, message: str
) -> None:
    with pytest.raises(UsageError) as raised:
        build_steward(_config(tmp_path, text), verifier=FakeVerifier())
    assert message in raised.value.message
    assert "\n" not in raised.value.message
    assert not (tmp_path / "state" / "ca.key").exists()  # nothing made before the refusal


@pytest.mark.parametrize(
    "pin",
    [
        'hash = ["' + "ab" * 48 + '"]',
        'signer = ["' + "cd" * 48 + '"]',
        'id_key_digest = ["' + "ef" * 48 + '"]',
        'hash = ["' + "ab" * 48 + '"]\nallowed_workloads = ["' + "01" * 32 + '"]',
    ],
)
def test_any_one_pin_is_enough(tmp_path: Path, pin: str) -> None:
    steward, _ = build_steward(_config(tmp_path, f"[snp]\n{pin}\n"), verifier=FakeVerifier())
    steward.store.close()


def _gauge(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "donjon_steward_policy_accept_any_workload":
                out[sample.labels["platform"]] = sample.value
    return out


def test_accept_any_workload_is_an_explicit_logged_visible_opt_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="donjon.steward"):
        steward, _ = build_steward(
            _config(tmp_path, "[snp]\naccept_any_workload = true\n"), verifier=FakeVerifier()
        )
    try:
        warnings = [r.getMessage() for r in caplog.records]
        assert any("[snp] accept_any_workload = true: ANY genuine snp guest" in w for w in warnings)
        assert _gauge(steward.metrics.render().decode()) == {"snp": 1.0}
        from donjon.steward.app import policy_summary

        assert policy_summary(steward.policy)["accept_any_workload"] == ["snp"]
    finally:
        steward.store.close()


def test_get_root_shows_the_opt_ins(start_steward: StewardFactory, tmp_path: Path) -> None:
    policy = Policy.from_toml(
        '[snp]\naccept_any_workload = true\n[freshness]\ndonjon = "optional"\n',
        source="p.toml",
        base_dir=tmp_path,
    )
    s = start_steward(verifier=verify_csr, policy=policy, trust=TrustStore())
    body = s.client.get("/").json()
    assert body["policy"]["accept_any_workload"] == ["snp"]
    assert body["policy"]["freshness"] == {
        "donjon": "optional",
        "enarx": "accept",
        "nonce_lifetime_seconds": 120,
    }


# --- log and response size ---------------------------------------------------------------------


def _csr_with_extensions(count: int, value: bytes = b"\x05\x00") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    for i in range(count):
        oid = x509.ObjectIdentifier(f"1.3.6.1.4.1.99999.{i}")
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_a_huge_hostile_csr_gets_a_short_answer_and_a_short_log_line(
    start_steward: StewardFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csr = _csr_with_extensions(3000, b"\x04\x08" + b"longer!!")
    assert len(csr) > 70_000  # the review's 78 KB request
    policy = Policy.from_toml("[snp]\naccept_any_workload = true\n", source="p", base_dir=tmp_path)
    s = start_steward(verifier=verify_csr, policy=policy, trust=TrustStore())
    with caplog.at_level(logging.WARNING, logger="donjon.steward"):
        response = s.client.post("/v1/attest", content=csr, headers=PKCS10)
    assert response.status_code == 400
    assert response.json()["check"] == "csr.extensions"
    assert "3000 extensions (at most 16)" in response.json()["detail"]
    # Before: a 262 KB body and a 131 KB log line.
    assert len(response.content) < 2_000
    lines = [r.getMessage() for r in caplog.records if "refused attestation" in r.getMessage()]
    assert len(lines) == 1 and len(lines[0]) < 600


def test_a_flood_of_refusals_is_stored_and_logged_within_a_budget(
    start_steward: StewardFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policy = Policy.from_toml("[snp]\naccept_any_workload = true\n", source="p", base_dir=tmp_path)
    s = start_steward(verifier=verify_csr, policy=policy, trust=TrustStore())
    ticks = [0.0]
    s.steward.refusals.ticker = lambda: ticks[0]
    csr = _csr_with_extensions(40)  # refused as fast as it can be: too many extensions
    sent = 400
    with caplog.at_level(logging.WARNING, logger="donjon.steward"):
        for _ in range(sent):
            assert s.client.post("/", content=csr, headers=PKCS10).status_code == 400
        ticks[0] = 61.0  # a minute later, the next refusal writes the summary first
        assert s.client.post("/", content=csr, headers=PKCS10).status_code == 400
    stored = s.steward.store.rejections(limit=10_000)
    logged = [r.getMessage() for r in caplog.records]
    log_bytes = sum(len(m) for m in logged)
    # The budget (120 a minute), one summary, and the first refusal of the new minute.
    assert len(stored) == 120 + 1 + 1
    summary = [r for r in stored if r.reason == "flood.summary"]
    assert len(summary) == 1 and f"{sent - 120} refusals" in summary[0].detail
    assert len(logged) == 122 and log_bytes < 122 * 600
    # Every refusal is still counted in /metrics.
    metrics = s.client.get("/metrics").text
    counted = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "donjon_steward_verdicts_total"
        and sample.labels.get("reason") == "csr.extensions"
    ]
    assert counted == [float(sent + 1)]


def test_a_flood_of_refused_secret_releases_is_bounded_like_attestations(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # POST /v1/secrets/{name} needs no credential to be refused, and every refusal was a
    # row and a log line quoting the name (60 KB names: 37 KB a line, 11 MB in 10 s).
    audit = AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}")
    store = SecretStore(audit.engine)
    now = datetime.now(UTC)
    ca = CertificateAuthority.create(name="test CA", curve="p384", now=now)
    service = SecretService(store=store, kek=Kek(b"\5" * 32), ca=ca, audit=audit, clock=lambda: now)
    forged = "x\n2026-12-03 16:00:00,000 INFO donjon.steward: secret db released\n" + "A" * 60_000
    sent = 400
    with caplog.at_level(logging.WARNING, logger="donjon.steward"):
        for _ in range(sent):  # well within the budget's minute
            with pytest.raises(StewardError):
                service.release(forged, client_cert_der=None, nonce_hex=None, signature_b64=None)
        assert len(store.releases(limit=10_000)) == 120
        late = time.monotonic() + 61.0  # a minute later, the next refusal writes the summary
        service.refusals.ticker = lambda: late
        with pytest.raises(StewardError):
            service.release("db", client_cert_der=None, nonce_hex=None, signature_b64=None)
    rows = store.releases(limit=10_000)
    assert len(rows) == 120 + 1 + 1
    summary = [r for r in rows if r.check == "flood.summary"]
    assert len(summary) == 1 and f"{sent - 120} refusals" in summary[0].detail
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 122
    assert all("\n" not in m and len(m) < 600 for m in logged)
    audit.close()


# --- file modes ----------------------------------------------------------------------------------


def test_the_state_directory_and_the_audit_database_are_private(tmp_path: Path) -> None:
    steward, _ = build_steward(
        _config(tmp_path, "[nil]\nallow = true\n", development=True), verifier=FakeVerifier()
    )
    try:
        state = tmp_path / "state"
        assert _mode(state) == 0o700
        assert _mode(state / "ca.key") == 0o600
        for name in ("audit.db", "audit.db-wal", "audit.db-shm"):
            path = state / name
            if path.exists() or name == "audit.db":
                assert _mode(path) == 0o600, name
        assert steward.store.counts()["issued"] == 0
    finally:
        steward.store.close()


def test_reading_the_store_beside_a_running_steward_does_not_detach_it(tmp_path: Path) -> None:
    # The Steward made its database private by opening and closing audit.db after SQLite
    # had opened it. Closing any descriptor of a file drops the process's POSIX locks on
    # it, SQLite's shared lock too: the next process to close the database (a routine
    # `donjon steward certs list`) then checkpointed and deleted the WAL under the running
    # Steward, whose later commits went to the unlinked file. `certs revoke` could not see
    # them, and a crash lost them.
    steward, _ = build_steward(
        _config(tmp_path, "[nil]\nallow = true\n", development=True), verifier=verify_csr
    )
    state = tmp_path / "state"

    def donjon(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "donjon.cli.main", "steward", "certs", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    try:
        steward.attest([make_csr()])
        assert donjon("list", "--dir", str(state)).returncode == 0
        assert (state / "audit.db-wal").exists()
        serial = steward.attest([make_csr()]).issued[0].serial_hex
        revoked = donjon("revoke", serial, "--reason", "key-compromise", "--dir", str(state))
        assert revoked.returncode == 0, revoked.stderr
        assert steward.store.get(serial).revocation_reason == "key-compromise"
    finally:
        steward.store.close()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_token_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    token = tmp_path / "admin.token"
    token.write_text(TOKEN)
    token.chmod(mode)
    config = _config(tmp_path, "[nil]\nallow = true\n", development=True, admin_token_file=token)
    with pytest.raises(UsageError) as raised:
        build_steward(config, verifier=FakeVerifier())
    assert "readable by other users" in raised.value.message
    assert raised.value.hint == f"chmod 600 {token}"
    token.chmod(0o600)
    steward, settings = build_steward(config, verifier=FakeVerifier())
    steward.store.close()
    assert settings.admin_token == TOKEN
