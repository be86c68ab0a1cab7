"""Probes and graceful shutdown: /healthz, /readyz, and a drain that finishes what is in flight.

The drain is driven through the server's own signal handler (``handle_exit``,
what SIGTERM calls) for the in-process server, and by a real SIGTERM to
``donjon steward serve --workers 2`` in a child process.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from steward_fakes import FakeVerifier, make_csr
from steward_harness import StewardFactory, TlsFiles

from donjon.steward.errors import StoreError
from support.net import free_port

PKCS10 = {"Content-Type": "application/pkcs10"}
NIL_POLICY = 'san_dns = ["keep.example.test"]\n\n[nil]\nallow = true\n'


def test_healthz_and_readyz(start_steward: StewardFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    s = start_steward()
    assert s.client.get("/healthz").json() == {"status": "ok", "draining": False}
    assert s.client.get("/readyz").json() == {"status": "ready"}

    def down() -> None:
        raise StoreError("audit store unavailable: connection refused")

    monkeypatch.setattr(s.steward.store, "ping", down)
    ready = s.client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == "2"
    assert ready.json()["failed"] == {"database": "audit store unavailable: connection refused"}
    assert s.client.get("/healthz").status_code == 200  # liveness does not follow the database


def test_drain_finishes_in_flight_and_refuses_new_requests(start_steward: StewardFactory) -> None:
    inner = FakeVerifier()
    entered = threading.Event()

    def slow(csr_der: bytes, **kwargs: Any) -> Any:
        entered.set()
        time.sleep(1.5)
        return inner(csr_der, **kwargs)

    s = start_steward(verifier=slow)
    s.server.drain_seconds = 0.5
    answers: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: answers.append(s.client.post("/", content=make_csr(), headers=PKCS10))
    )
    worker.start()
    assert entered.wait(10)
    s.server.handle_exit(signal.SIGTERM, None)  # what SIGTERM does
    with httpx.Client(base_url=s.url, verify=s.tls.context, timeout=10) as fresh:
        refused = fresh.post("/", content=make_csr(), headers=PKCS10)
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "2"
        assert refused.json()["type"].endswith(":shutting-down")
        assert fresh.get("/readyz").status_code == 503
        assert fresh.get("/healthz").json()["draining"] is True
    worker.join(timeout=20)
    assert [a.status_code for a in answers] == [200]  # the request in flight finished
    assert s.steward.store.counts()["issued"] == 1
    deadline = time.monotonic() + 20
    while not s.server.should_exit and time.monotonic() < deadline:
        time.sleep(0.05)
    assert s.server.should_exit  # it stopped by itself once drained


@pytest.mark.slow
def test_workers_share_a_port_sum_metrics_and_drain_on_sigterm(
    tmp_path: Path, tls_files: TlsFiles
) -> None:
    policy = tmp_path / "nil.toml"
    policy.write_text(NIL_POLICY)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    args = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve",
        "--dir", str(tmp_path / "state"), "--init", "--dev", "--policy", str(policy),
        "--port", str(port), "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key),
        "--workers", "2", "--drain-seconds", "2", "--log-level", "warning",
    ]  # fmt: skip
    log = (tmp_path / "steward.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/readyz", verify=tls_files.context, timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        statuses = []
        for _ in range(12):  # a new connection each: the kernel hands them to either worker
            with httpx.Client(base_url=url, verify=tls_files.context, timeout=30) as c:
                statuses.append(c.post("/", content=make_csr(), headers=PKCS10).status_code)
        assert statuses == [200] * 12
        metrics = httpx.get(url + "/metrics", verify=tls_files.context, timeout=10).text
        assert "donjon_steward_certificates_issued_total 12.0" in metrics  # summed over workers
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.post(
            url + "/", content=make_csr(), headers=PKCS10, verify=tls_files.context, timeout=10
        )
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_workers_log_what_a_request_quotes_escaped(tmp_path: Path, tls_files: TlsFiles) -> None:
    # A worker is a fresh (spawned) process: it logged with a plain formatter, so a secret
    # name with newlines in the request's path wrote lines of the requester's choosing.
    policy = tmp_path / "nil.toml"
    policy.write_text(NIL_POLICY)
    kek = tmp_path / "kek"
    kek.write_text("11" * 32)
    kek.chmod(0o600)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    args = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve",
        "--dir", str(tmp_path / "state"), "--init", "--dev", "--policy", str(policy),
        "--port", str(port), "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key),
        "--workers", "2", "--drain-seconds", "0", "--log-level", "warning",
        "--secrets-kek-file", str(kek),
    ]  # fmt: skip
    forged = "FORGED INFO donjon.steward: issued certificate serial=00"
    log = (tmp_path / "steward.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/readyz", verify=tls_files.context, timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        for _ in range(4):  # new connections: both workers answer some of them
            with httpx.Client(base_url=url, verify=tls_files.context, timeout=30) as c:
                path = "/v1/secrets/x%0A" + forged.replace(" ", "%20") + "%0A%1B[2J"
                assert c.post(path, json={}).status_code == 400
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
    lines = (tmp_path / "steward.log").read_text().splitlines()
    refused = [line for line in lines if "refused to serial=-" in line]
    assert len(refused) == 4
    assert all("x\\n" + forged + "\\n\\x1b[2J" in line for line in refused)
    assert not [line for line in lines if line.startswith("FORGED") or "\x1b" in line]


def test_a_worker_logs_through_the_escaping_formatter(capsys: pytest.CaptureFixture[str]) -> None:
    # What the single process does (cli.steward): a quote of a request cannot start a
    # line of its own. A spawned worker once logged through a plain formatter.
    from donjon import logformat

    with logformat.configured("info", "text", worker=True):
        logging.getLogger("donjon.steward").error(
            "internal error answering %s %s", "POST", "/v1/x\nFORGED line\x1b[2J"
        )
    err = capsys.readouterr().err
    assert (
        f"donjon.steward[{os.getpid()}]: internal error answering POST /v1/x\\nFORGED line\\x1b[2J"
        in err
    )
    assert "\nFORGED" not in err and "\x1b" not in err
