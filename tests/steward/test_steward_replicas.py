"""Steward replicas on one PostgreSQL: three ``donjon steward serve`` processes, one store.

A plain round-robin client spreads concurrent attest, revoke, challenge and
CRL requests over them; then every cross-replica invariant is checked against
the database: unique serials, one audit row per certificate handed out, a
nonce accepted once, a revocation visible (CRL) and enforced (revoked key) on
every replica at once, the same revocations in every CRL. Then one replica is
SIGKILLed mid-load, and PostgreSQL itself is restarted mid-load: 503 while it
is down (never 500, never a certificate without its row), and recovery by
themselves.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from steward_fakes import CLAIMS, make_csr, make_key
from steward_harness import StewardProcess, TlsFiles

from donjon.steward import wire
from donjon.steward.store import normalize_url
from support.net import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PKCS10 = {"Content-Type": "application/pkcs10"}
TOKEN = "replica-admin-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
NIL_POLICY = (
    'san_dns = ["keep.example.test"]\n\n[nil]\nallow = true\n\n[freshness]\ndonjon = "optional"\n'
)


@dataclass
class Replicas:
    urls: list[str]
    procs: list[StewardProcess]
    db_url: str
    tls: TlsFiles
    _turn: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> int:
        """Plain round robin: the next replica, whatever state it is in."""
        with self._lock:
            return next(self._turn) % len(self.urls)

    def post(self, index: int, path: str, **kwargs: object) -> httpx.Response:
        return httpx.post(
            self.urls[index] + path,
            verify=self.tls.context,
            timeout=30,
            **kwargs,  # type: ignore[arg-type]
        )

    def get(self, index: int, path: str) -> httpx.Response:
        return httpx.get(self.urls[index] + path, verify=self.tls.context, timeout=30)

    def rows(self) -> dict[str, bool]:
        """serial -> revoked, straight from the database."""
        engine = sa.create_engine(normalize_url(self.db_url))
        try:
            with engine.connect() as conn:
                found = conn.execute(sa.text("SELECT serial, revoked_at FROM certificates")).all()
        finally:
            engine.dispose()
        return {serial: revoked is not None for serial, revoked in found}


def _serial(body: bytes) -> str:
    leaf = x509.load_der_x509_certificate(wire.split_sequence(body, "answer")[1])
    return format(leaf.serial_number, "x")


def _crl_serials(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    crl = x509.load_der_x509_crl(response.content)
    return {format(r.serial_number, "x") for r in crl}


@pytest.fixture
def replicas(
    postgres_url: str, tls_files: TlsFiles, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Replicas]:
    import psycopg

    name = f"replicas_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = postgres_url.rsplit("/", 1)[0] + "/" + name
    count = getattr(request, "param", 3)
    policy = tmp_path / "nil.toml"
    policy.write_text(NIL_POLICY)
    state = tmp_path / "state"  # one CA for all: the files a Secret would mount in each pod
    (tmp_path / "admin.token").write_text(TOKEN)
    (tmp_path / "admin.token").chmod(0o600)
    urls, procs = [], []
    try:
        for index in range(count):
            port = free_port()
            args = [
                sys.executable, "-m", "donjon.cli.main", "steward", "serve",
                "--dir", str(state), "--init", "--dev", "--policy", str(policy),
                "--db", db_url, "--admin-token-file", str(tmp_path / "admin.token"),
                "--port", str(port), "--tls-cert", str(tls_files.cert),
                "--tls-key", str(tls_files.key), "--log-level", "warning",
                "--drain-seconds", "0",
            ]  # fmt: skip
            proc = StewardProcess(args, tmp_path / f"replica{index}.log")
            procs.append(proc)
            urls.append(f"https://127.0.0.1:{port}")
            proc.wait_ready(urls[-1], tls_files.context)  # one at a time: one --init makes the CA
        yield Replicas(urls, procs, db_url, tls_files)
    finally:
        for proc in procs:
            proc.kill()


def test_concurrent_attest_revoke_challenge_and_crl_keep_every_invariant(
    replicas: Replicas,
) -> None:
    received: list[str] = []
    revoked_by_me: list[str] = []
    statuses: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()

    def attester(count: int) -> None:
        for _ in range(count):
            key = make_key(ec.SECP256R1())
            index = replicas.next()
            r = replicas.post(index, "/", content=make_csr(key), headers=PKCS10)
            with lock:
                statuses.append(r.status_code)
            if r.status_code != 200:
                continue
            serial = _serial(r.content)
            with lock:
                received.append(serial)
            if int(serial, 16) % 4:
                continue
            # Revoke on the next replica; the one after that must refuse the key and list it
            # in its CRL at once.
            other, third = (index + 1) % 3, (index + 2) % 3
            done = replicas.post(other, "/v1/revoke", json={"serial": serial}, headers=ADMIN)
            if done.status_code != 200:
                failures.append(f"revoke {serial}: {done.status_code} {done.text}")
                continue
            with lock:
                revoked_by_me.append(serial)
            if serial not in _crl_serials(replicas.get(third, "/v1/crl")):
                failures.append(f"{serial} revoked on {other} is missing from {third}'s CRL")
            again = replicas.post(third, "/", content=make_csr(key), headers=PKCS10)
            if again.status_code != 403:
                failures.append(f"revoked key re-attested on {third}: {again.status_code}")
            with lock:
                statuses.append(again.status_code)

    def crl_reader(stop: threading.Event) -> None:
        while not stop.is_set():
            r = replicas.get(replicas.next(), "/v1/crl")
            with lock:
                statuses.append(r.status_code)

    stop = threading.Event()
    readers = [threading.Thread(target=crl_reader, args=(stop,))]
    workers = [threading.Thread(target=attester, args=(16,)) for _ in range(4)]
    for t in readers + workers:
        t.start()
    # Meanwhile: one challenge, answered on all three replicas at once: accepted once.
    nonce = bytes.fromhex(replicas.post(0, "/v1/challenge").json()["nonce"])
    from dataclasses import replace

    raced = make_csr(claims=replace(CLAIMS, nonce=nonce))
    race: list[httpx.Response] = []
    gate = threading.Barrier(3)

    def racer(index: int) -> None:
        gate.wait()
        race.append(replicas.post(index, "/", content=raced, headers=PKCS10))

    racers = [threading.Thread(target=racer, args=(i,)) for i in range(3)]
    for t in racers:
        t.start()
    for t in workers + racers:
        t.join(timeout=240)
    stop.set()
    for t in readers:
        t.join(timeout=60)

    assert failures == []
    assert all(s < 500 for s in statuses), sorted(set(statuses))
    assert sorted(r.status_code for r in race) == [200, 403, 403], [r.text for r in race]
    received.extend(_serial(r.content) for r in race if r.status_code == 200)
    assert len(set(received)) == len(received)  # serials unique across replicas
    rows = replicas.rows()
    assert set(rows) == set(received)  # exactly one audit row per certificate handed out
    assert {s for s, revoked in rows.items() if revoked} == set(revoked_by_me)
    crls = [_crl_serials(replicas.get(i, "/v1/crl")) for i in range(3)]
    assert crls[0] == crls[1] == crls[2] == set(revoked_by_me)  # every replica, same CRL


def test_a_replica_killed_mid_load_loses_and_duplicates_no_audit_row(replicas: Replicas) -> None:
    received: list[str] = []
    lost: list[int] = []  # requests whose answer never came (the killed replica's)
    lock = threading.Lock()

    def client(count: int) -> None:
        for _ in range(count):
            csr = make_csr(make_key(ec.SECP256R1()))
            for _attempt in range(3):  # a client retries on another replica
                index = replicas.next()
                try:
                    r = replicas.post(index, "/", content=csr, headers=PKCS10)
                except httpx.HTTPError:
                    with lock:
                        lost.append(index)
                    continue
                assert r.status_code < 500, r.text
                if r.status_code == 200:
                    with lock:
                        received.append(_serial(r.content))
                break

    threads = [threading.Thread(target=client, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(received) < 25 and time.monotonic() < deadline:
        time.sleep(0.01)
    replicas.procs[1].kill()  # SIGKILL, with requests in flight
    for t in threads:
        t.join(timeout=240)
    assert len(received) == len(set(received)) and len(received) >= 90
    rows = replicas.rows()
    assert set(received) <= set(rows)  # no certificate handed out without its row
    # A row without a delivered certificate is only possible for a request that died with
    # the replica (committed, then killed before the answer left): never more than those.
    assert len(set(rows) - set(received)) <= len(lost)


@pytest.mark.parametrize("replicas", [2], indirect=True)
def test_postgresql_restarted_mid_load_gives_503_then_recovers(
    replicas: Replicas, postgres_server: Any
) -> None:
    # The session's server (tests/steward/conftest.py): stop() and start() its cluster.
    assert callable(postgres_server.stop) and callable(postgres_server.start)
    received: list[str] = []
    statuses: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            r = replicas.post(replicas.next(), "/", content=make_csr(), headers=PKCS10)
            with lock:
                statuses.append(r.status_code)
                if r.status_code == 200:
                    received.append(_serial(r.content))
            if r.status_code == 503:
                assert r.headers.get("Retry-After")
                time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    postgres_server.stop()
    try:
        time.sleep(2.0)
        with lock:
            during = len(statuses)
        time.sleep(1.0)
        ready = [replicas.get(i, "/readyz") for i in range(2)]
        assert [r.status_code for r in ready] == [503, 503]
        assert all("database" in r.json()["failed"] for r in ready)
        assert replicas.get(0, "/healthz").status_code == 200
    finally:
        postgres_server.start()
    with lock:
        down = statuses[during:]
    assert down and set(down) == {503}, sorted(set(down))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(replicas.get(i, "/readyz").status_code == 200 for i in range(2)):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the replicas did not recover after PostgreSQL came back")
    with lock:
        before = len(received)
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(received) > before  # issuing again, by themselves
    assert all(s in (200, 503) for s in statuses), sorted(set(statuses))
    rows = replicas.rows()
    assert set(received) <= set(rows)  # never a certificate without its audit row
