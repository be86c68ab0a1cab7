"""The Steward's secret routes over real HTTPS: admin token, each release check, rotation.

Identities are made in-process on the simulated TEE, as a Keep makes them, so
each check can be driven on its own: no client certificate, a bad signature, a
reused nonce, an unknown secret, rotation and withdrawal of a version.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from deploy_harness import SecretSteward

from donjon.attestation.claims import WorkloadClaims
from donjon.keep import identity as ident
from donjon.keep import platforms
from donjon.keep import tls as keep_tls
from donjon.keep.identity import Identity
from donjon.keep.secret_client import SecretClient, SecretFetchError
from donjon.keep.steward_client import StewardClient

pytestmark = pytest.mark.slow

PACKAGE = hashlib.sha256(b"release api package").digest()
POLICY = ["--allow-package", PACKAGE.hex(), "--platform", "sim", "--development",
          "--min-tcb-status", "NotAppraised"]  # fmt: skip


def donjon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "donjon.cli.main", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120,
    )  # fmt: skip


def keep_identity(steward: SecretSteward, sim_state: Path) -> Identity:
    platform = platforms.select("sim", sim_state)
    client = StewardClient(steward.url + "/", steward.https_ca)
    claims = WorkloadClaims(hashlib.sha256(b"w").digest(), b"", "api", client.challenge(), PACKAGE)
    key = ident.generate_key(platform)
    chain = client.request(ident.build_csr(key, claims, platform))
    return Identity(key, tuple(reversed(chain[1:])), chain[0], "sim", claims)


def mtls(steward: SecretSteward, identity: Identity | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(steward.https_ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    if identity is not None:
        keep_tls.load_identity(context, identity)
    return httpx.Client(base_url=steward.url, verify=context, timeout=30)


def put(
    steward: SecretSteward, name: str, value: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    return donjon("steward", "secrets", "put", name, "--value-env", "V", *extra,
                  *steward.admin_args(), env={"V": value})  # fmt: skip


def test_admin_routes_need_the_admin_token(secret_steward: SecretSteward) -> None:
    with mtls(secret_steward, None) as client:
        assert client.get("/v1/admin/secrets").status_code == 401
        wrong = client.get("/v1/admin/secrets", headers={"Authorization": "Bearer nope-nope-nope"})
        assert wrong.status_code == 401
    refused = donjon("steward", "secrets", "list", "--url", secret_steward.url,
                     "--ca", str(secret_steward.https_ca))  # fmt: skip
    assert refused.returncode == 2 and "admin token is needed" in refused.stderr


def test_each_release_check_refuses_with_its_id(
    secret_steward: SecretSteward, sim_state: Path
) -> None:
    assert put(secret_steward, "api-db", "value-one", *POLICY).returncode == 0
    twice = put(secret_steward, "api-db", "value-x", *POLICY)
    assert twice.returncode == 1 and "HTTP 409" in twice.stderr
    unbound = put(secret_steward, "api-unbound", "v", "--platform", "sim")
    assert unbound.returncode == 2 and "policy: bind the secret to" in unbound.stderr
    identity = keep_identity(secret_steward, sim_state)

    with mtls(secret_steward, None) as anonymous:
        nonce = anonymous.post("/v1/challenge").json()["nonce"]
        answer = anonymous.post("/v1/secrets/api-db", json={"nonce": nonce, "signature": "AA=="})
        assert answer.status_code == 403 and answer.json()["check"] == "mtls.client_certificate"
    with mtls(secret_steward, identity) as client:
        nonce = client.post("/v1/challenge").json()["nonce"]
        bad = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()
        answer = client.post("/v1/secrets/api-db", json={"nonce": nonce, "signature": bad})
        assert answer.status_code == 403 and answer.json()["check"] == "binding.signature"
        answer = client.post("/v1/secrets/api-db", json={"nonce": "00" * 32, "signature": bad})
        assert answer.json()["check"] == "binding.signature"
        extra = client.post("/v1/secrets/api-db", json={"nonce": nonce, "x": 1})
        assert extra.status_code == 400
    with SecretClient(secret_steward.url, secret_steward.https_ca, identity) as secrets:
        assert secrets.fetch("api-db").value == b"value-one"
        with pytest.raises(SecretFetchError, match=r"HTTP 404: .*\[secret\.unknown\]"):
            secrets.fetch("no-such-secret")
        rotated = donjon("steward", "secrets", "rotate", "api-db", "--value-env", "V",
                         *secret_steward.admin_args(), env={"V": "value-two"})  # fmt: skip
        assert rotated.returncode == 0 and "version 2" in rotated.stdout
        assert secrets.fetch("api-db").version == 2
        gone = donjon("steward", "secrets", "delete", "api-db", "--version", "2",
                      *secret_steward.admin_args())  # fmt: skip
        assert gone.returncode == 0, gone.stderr
        again = secrets.fetch("api-db")
        assert (again.version, again.value) == (1, b"value-one")
    listed = donjon("steward", "secrets", "list", "--json", *secret_steward.admin_args())
    entry = next(e for e in json.loads(listed.stdout) if e["name"] == "api-db")
    assert entry["live_versions"] == [1] and entry["versions"] == [1, 2]
    meta = donjon(
        "steward", "secrets", "show-meta", "api-db", "--json", *secret_steward.admin_args()
    )
    releases = json.loads(meta.stdout)["releases"]
    checks = {r["check"] for r in releases}
    assert {"ok", "mtls.client_certificate", "binding.signature"} <= checks
    everything = meta.stdout + listed.stdout + secret_steward.log.read_text()
    assert "value-one" not in everything and "value-two" not in everything


def test_metrics_name_routes_not_secrets(secret_steward: SecretSteward) -> None:
    with mtls(secret_steward, None) as client:
        # Its own request (the module's tests may run in another xdist worker): a
        # refused fetch of a real name is counted under the route's template.
        client.get("/v1/secrets/api-db")
        text = client.get("/metrics").text
    assert "/v1/secrets/{name}" in text and "api-db" not in text


def test_secrets_with_workers(
    tmp_path: Path, secret_steward: SecretSteward, sim_state: Path
) -> None:
    """Every worker of ``--workers 2`` releases secrets (KEK and tables set up once)."""
    from support.net import free_port, stop, wait_port
    from support.pki import write_self_signed

    cert, key = write_self_signed(tmp_path, cert_name="https.pem", key_name="https.key")
    (tmp_path / "dev.toml").write_text(f'[sim]\ntrust = "{sim_state / "sim" / "ark.pem"}"\n')
    token = tmp_path / "admin.token"
    token.write_text("workers-admin-token-0123")
    token.chmod(0o600)
    kek = tmp_path / "kek"
    kek.write_text("11" * 32)
    kek.chmod(0o600)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dev", "--init",
         "--workers", "2", "--dir", str(tmp_path / "state"), "--port", str(port),
         "--policy", str(tmp_path / "dev.toml"), "--tls-cert", str(cert), "--tls-key", str(key),
         "--admin-token-file", str(token), "--secrets-kek-file", str(kek)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        steward = SecretSteward(f"https://localhost:{port}", cert, token, tmp_path / "state",
                                tmp_path / "none.log")  # fmt: skip
        assert put(steward, "workers-db", "w-value", *POLICY).returncode == 0
        identity = keep_identity(steward, sim_state)
        for _ in range(4):  # new connections: both workers answer some of them
            with SecretClient(steward.url, cert, identity) as secrets:
                assert secrets.fetch("workers-db").value == b"w-value"
    finally:
        stop(proc)
