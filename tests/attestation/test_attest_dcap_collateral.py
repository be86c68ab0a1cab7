"""Intel collateral: the bundle format, its sources in order, the on-disk cache (expiring at
nextUpdate), and the PCS/PCCS fetcher against a fake PCS on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from dcap_support import FAKE_NOW, FakeIntel, dcap_vectors, load_quote, run, verify_at

from donjon.attestation.dcap.collateral import (
    CollateralBundle,
    chain_pem,
    crl_der,
    parse_bundle,
    parse_qe_identity,
    parse_tcb_info,
)
from donjon.attestation.dcap.fetch import PcsFetcher
from donjon.attestation.dcap.store import IntelCollateralStore, Pool, load_bundle_file
from donjon.attestation.errors import CollateralMissingError, MalformedEvidenceError

DONJON = [sys.executable, "-m", "donjon.cli.main"]


@dataclass
class FakePcs:
    routes: dict[str, tuple[bytes, dict[str, str]]] = field(default_factory=dict)
    failures: dict[str, list[int]] = field(default_factory=dict)
    delay: float = 0.0
    requests: list[str] = field(default_factory=list)
    url: str = ""

    def serve_bundle(self, bundle: CollateralBundle, tee: str, fmspc: bytes, ca: str) -> None:
        """Intel's v4 API shapes: JSON bodies, issuer chains in URL-encoded headers."""

        def header(certs: Any) -> str:
            return urllib.parse.quote(chain_pem(certs))

        service = tee.lower()
        tcb = b'{"tcbInfo":' + bundle.tcb_info.body + b',"signature":"'
        tcb += bundle.tcb_info.signature.hex().encode() + b'"}'
        qe = b'{"enclaveIdentity":' + bundle.qe_identity.body + b',"signature":"'
        qe += bundle.qe_identity.signature.hex().encode() + b'"}'
        self.routes[f"/{service}/certification/v4/tcb?fmspc={fmspc.hex().upper()}"] = (
            tcb,
            {"TCB-Info-Issuer-Chain": header(bundle.tcb_info.chain)},
        )
        self.routes[f"/{service}/certification/v4/qe/identity"] = (
            qe,
            {"SGX-Enclave-Identity-Issuer-Chain": header(bundle.qe_identity.chain)},
        )
        self.routes[f"/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"] = (
            crl_der(bundle.pck_crl),
            {"SGX-PCK-CRL-Issuer-Chain": header(bundle.pck_crl_chain)},
        )
        self.routes["/sgx/certification/v4/rootcacrl"] = (
            crl_der(bundle.root_crl).hex().encode(),
            {},
        )


@pytest.fixture
def pcs() -> Iterator[FakePcs]:
    state = FakePcs()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            if state.delay:
                time.sleep(state.delay)
            pending = state.failures.get(self.path)
            if pending:
                self.send_response(pending.pop(0))
                self.end_headers()
                return
            found = state.routes.get(self.path)
            if found is None:
                self.send_response(404)
                self.end_headers()
                return
            body, headers = found
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def fake() -> FakeIntel:
    return FakeIntel()


def fetcher(pcs: FakePcs, **kwargs: Any) -> PcsFetcher:
    return PcsFetcher(pcs.url, sleep=lambda _: None, **kwargs)


# --- the bundle ---------------------------------------------------------------------------


def test_bundles_of_the_vectors_round_trip(vectors: Path, expected: dict[str, Any]) -> None:
    for vector in dcap_vectors(expected):
        if "collateral" not in vector:
            continue
        path = vectors / vector["collateral"]
        bundle = load_bundle_file(path)
        assert bundle.to_json() == json.loads(path.read_text()), vector["id"]
        meta = vector["computed"]["collateral_checks"]
        assert (
            parse_tcb_info(bundle.tcb_info.body).evaluation_number
            == (meta["tcb_info_meta"]["evalnum"])
        )
        assert parse_qe_identity(bundle.qe_identity.body).id == meta["qe_identity_meta"]["id"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d.update(extra=1), "extra: unknown key"),
        (lambda d: d.pop("pck_crl"), "pck_crl: missing"),
        (lambda d: d.update(tcb_info_signature="zz"), "tcb_info_signature: is not hex"),
        (lambda d: d.update(root_ca_crl="00"), "root_ca_crl: not a CRL"),
    ],
)
def test_bundle_strictness(vectors: Path, change: Any, words: str) -> None:
    doc = json.loads((vectors / "tdx/phala-dcap-qvl/tdx_quote_collateral.json").read_text())
    change(doc)
    with pytest.raises(MalformedEvidenceError, match=words):
        parse_bundle(json.dumps(doc).encode(), "bundle.json")


def test_tcb_info_strictness(vectors: Path) -> None:
    v2 = json.loads((vectors / "sgx/intel-qvl-sample/tcbInfo.json").read_text())["tcbInfo"]
    with pytest.raises(MalformedEvidenceError, match="TCB Info version 2 is not supported"):
        parse_tcb_info(json.dumps(v2).encode())
    doc = json.loads(load_bundle_file(
        vectors / "tdx/phala-dcap-qvl/tdx_quote_collateral.json"
    ).tcb_info.body)  # fmt: skip
    for mutate, words in [
        (lambda d: d["tcbLevels"][0].update(tcbStatus="Fine"), "unknown status 'Fine'"),
        (lambda d: d.update(tcbType=1), "tcbType: 1 is not supported"),
        (lambda d: d.pop("fmspc"), "fmspc: missing"),
        (lambda d: d["tcbLevels"][0]["tcb"]["sgxtcbcomponents"].pop(), "16 components"),
        (lambda d: d.update(id="SEV"), "neither SGX nor TDX"),
    ]:
        broken = json.loads(json.dumps(doc))
        mutate(broken)
        with pytest.raises(MalformedEvidenceError, match=words):
            parse_tcb_info(json.dumps(broken).encode())


# --- sources, in order ---------------------------------------------------------------------


def test_evidence_comes_before_the_file(fake: FakeIntel) -> None:
    evidence = Pool.of_bundle(fake.collateral(), "the evidence", explicit=True)
    given = Pool.of_bundle(
        fake.collateral(FAKE_NOW - timedelta(days=1)), "--collateral", explicit=True
    )
    for pools, source in (((evidence, given), "the evidence"), ((given, evidence), "--collateral")):
        result, checks = run(fake.quote(), now=FAKE_NOW, pin=fake.pin, pools=pools)
        assert result is not None
        reason = next(c.reason for c in checks.checks if c.id == "dcap.collateral")
        assert reason.startswith(f"TCB Info from {source}"), reason


def test_a_stale_first_source_gives_way_to_a_current_one(fake: FakeIntel) -> None:
    old = Pool.of_bundle(fake.collateral(FAKE_NOW - timedelta(days=40)), "old", explicit=True)
    new = Pool.of_bundle(fake.collateral(), "new", explicit=True)
    result, checks = run(fake.quote(), now=FAKE_NOW, pin=fake.pin, pools=(old, new))
    assert result is not None, checks.error
    assert "TCB Info from new" in next(c.reason for c in checks.checks if c.id == "dcap.collateral")


def test_trust_directory_bundle_and_root(tmp_path: Path, vectors: Path, expected: Any) -> None:
    vector = next(v for v in dcap_vectors(expected) if v["id"] == "tdx-v4-phala")
    (tmp_path / "intel").mkdir()
    (tmp_path / "intel" / "collateral.json").write_bytes(
        (vectors / vector["collateral"]).read_bytes()
    )
    (tmp_path / "root.der").write_bytes((vectors / "intel-roots/Intel_SGX_RootCA.der").read_bytes())
    (tmp_path / "notes.txt").write_text("ignored")
    store = IntelCollateralStore(trust_dir=tmp_path)
    result, checks = run(load_quote(vectors, vector), now=verify_at(vector), store=store)
    assert result is not None and result.tcb is not None, checks.error
    reason = next(c.reason for c in checks.checks if c.id == "dcap.collateral")
    assert str(tmp_path) in reason
    assert any(r.issuer == r.subject for r in store.roots())


# --- fetching, and the cache -----------------------------------------------------------------


def test_fetch_builds_the_bundle_from_pcs_answers(pcs: FakePcs, fake: FakeIntel) -> None:
    bundle = fake.collateral()
    pcs.serve_bundle(bundle, "TDX", fake.config.fmspc, "platform")
    got = fetcher(pcs).bundle("TDX", fake.config.fmspc, "platform")
    assert got.tcb_info.body == bundle.tcb_info.body  # the exact signed bytes
    assert got.qe_identity.signature == bundle.qe_identity.signature
    assert [c.subject for c in got.tcb_info.chain] == [c.subject for c in bundle.tcb_info.chain]
    assert got.pck_crl == bundle.pck_crl and got.root_crl == bundle.root_crl
    assert len(pcs.requests) == 4


def test_fetch_retries_server_errors_and_gives_up_on_404(pcs: FakePcs, fake: FakeIntel) -> None:
    bundle = fake.collateral()
    pcs.serve_bundle(bundle, "TDX", fake.config.fmspc, "platform")
    path = f"/tdx/certification/v4/tcb?fmspc={fake.config.fmspc.hex().upper()}"
    pcs.failures[path] = [503, 429]
    fetcher(pcs).bundle("TDX", fake.config.fmspc, "platform")
    assert pcs.requests.count(path) == 3
    pcs.requests.clear()
    with pytest.raises(CollateralMissingError, match="HTTP 404"):
        fetcher(pcs).bundle("TDX", bytes(6), "platform")  # an FMSPC the PCS does not know
    assert len(pcs.requests) == 1  # 404 is final


def test_fetch_times_out(pcs: FakePcs, fake: FakeIntel) -> None:
    pcs.serve_bundle(fake.collateral(), "TDX", fake.config.fmspc, "platform")
    pcs.delay = 0.5
    started = time.monotonic()
    with pytest.raises(CollateralMissingError, match=r"ReadTimeout|TimeoutException|timed out"):
        fetcher(pcs, timeout=0.1, retries=1).bundle("TDX", fake.config.fmspc, "platform")
    assert time.monotonic() - started < 5
    assert len(pcs.requests) == 2  # one try, one retry


def test_fetched_collateral_is_cached_until_next_update(
    pcs: FakePcs, fake: FakeIntel, tmp_path: Path
) -> None:
    pcs.serve_bundle(fake.collateral(), "TDX", fake.config.fmspc, "platform")
    store = IntelCollateralStore(cache_dir=tmp_path)
    result, checks = run(
        fake.quote(), now=FAKE_NOW, pin=fake.pin, store=store, fetcher=fetcher(pcs)
    )
    assert result is not None, checks.error
    cached = tmp_path / "intel" / f"tdx-{fake.config.fmspc.hex()}-platform.json"
    assert cached.is_file() and oct(cached.stat().st_mode & 0o777) == "0o600"
    asked = len(pcs.requests)
    # A new store (a restarted Steward) reads the cache instead of asking again...
    later = FAKE_NOW + timedelta(days=10)
    fresh = IntelCollateralStore(cache_dir=tmp_path)
    result, _ = run(fake.quote(), now=later, pin=fake.pin, store=fresh, fetcher=fetcher(pcs))
    assert result is not None and len(pcs.requests) == asked
    # ...until its nextUpdate (30 days): then it asks the PCS again.
    expired = FAKE_NOW + timedelta(days=31)
    pcs.serve_bundle(fake.collateral(expired), "TDX", fake.config.fmspc, "platform")
    result, checks = run(
        fake.quote(), now=expired, pin=fake.pin,
        store=IntelCollateralStore(cache_dir=tmp_path), fetcher=fetcher(pcs),
    )  # fmt: skip
    assert result is not None, checks.error
    assert len(pcs.requests) == asked + 4


def test_fetch_failure_is_named_in_the_refusal(pcs: FakePcs, fake: FakeIntel) -> None:
    result, checks = run(fake.quote(), now=FAKE_NOW, pin=fake.pin, fetcher=fetcher(pcs))
    assert result is None and isinstance(checks.error, CollateralMissingError)
    assert "fetching failed" in str(checks.error) and "HTTP 404" in str(checks.error)


def test_damaged_cache_entry_is_refetched(pcs: FakePcs, fake: FakeIntel, tmp_path: Path) -> None:
    pcs.serve_bundle(fake.collateral(), "TDX", fake.config.fmspc, "platform")
    cached = tmp_path / "intel" / f"tdx-{fake.config.fmspc.hex()}-platform.json"
    cached.parent.mkdir(parents=True)
    cached.write_text('{"tcb_info": "not this"}')
    store = IntelCollateralStore(cache_dir=tmp_path)
    result, _ = run(fake.quote(), now=FAKE_NOW, pin=fake.pin, store=store, fetcher=fetcher(pcs))
    assert result is not None and len(pcs.requests) == 4
    assert parse_bundle(cached.read_bytes(), "cache").tcb_info.body  # replaced, whole


# --- the CLI ------------------------------------------------------------------------------------


def test_collateral_fetch_then_offline_verify(
    pcs: FakePcs, vectors: Path, expected: dict[str, Any], tmp_path: Path
) -> None:
    vector = next(v for v in dcap_vectors(expected) if v["id"] == "tdx-v4-phala")
    bundle = load_bundle_file(vectors / vector["collateral"])
    fmspc = bytes.fromhex(vector["computed"]["checks"]["fmspc"])
    pcs.serve_bundle(bundle, "TDX", fmspc, "platform")
    out = tmp_path / "collateral.json"
    quote = vectors / vector["evidence"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    fetched = subprocess.run(
        [*DONJON, "attest", "collateral", "fetch", str(quote), "-o", str(out), "--pccs", pcs.url,
         "--json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    info = json.loads(fetched.stdout)
    assert (info["tee"], info["fmspc"], info["pck_ca"]) == ("TDX", fmspc.hex(), "platform")
    assert load_bundle_file(out).to_json() == bundle.to_json()
    checked = subprocess.run(
        [*DONJON, "attest", "verify", str(quote), "--collateral", str(out), "--at",
         "2025-07-01T00:00Z", "--json"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    verdict = json.loads(checked.stdout)
    assert verdict["accepted"] and verdict["result"]["tcb_status"] == "UpToDate"


def test_collateral_bundle_of_a_fake_platform_serialises(fake: FakeIntel) -> None:
    bundle = fake.collateral()
    again = parse_bundle(bundle.to_bytes(), "again")
    assert again.to_json() == bundle.to_json()
    assert again.next_update == FAKE_NOW + timedelta(days=30) - timedelta(
        microseconds=FAKE_NOW.microsecond
    )
    assert [c.public_bytes(Encoding.DER) for c in again.tcb_info.chain] == [
        c.public_bytes(Encoding.DER) for c in bundle.tcb_info.chain
    ]
