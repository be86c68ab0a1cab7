"""The KDS collateral fetcher and the on-disk cache, against a fake KDS on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from attest_fakes import SnpVector, at, make_amd
from cryptography.hazmat.primitives.serialization import Encoding

from donjon.attestation import (
    CollateralMissingError,
    CrlMissingError,
    FingerprintMismatchError,
    KdsFetcher,
    Policy,
    Product,
    TrustStore,
    verify_report,
)

# expected.json (go-sev-guest upstream): the VCEK URL encodes these SPLs and this hwID.
GO_SEV_GUEST_HWID = (
    "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e537861"
    "84ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
)
GO_SEV_GUEST_VCEK_PATH = f"/vcek/v1/Milan/{GO_SEV_GUEST_HWID}?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68"


@dataclass
class FakeKds:
    routes: dict[str, bytes] = field(default_factory=dict)
    failures: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to send first
    delay: float = 0.0
    requests: list[str] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def kds() -> Iterator[FakeKds]:
    state = FakeKds()

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
            body = state.routes.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
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
        thread.join(timeout=5)


def fetcher(kds: FakeKds, **kwargs: Any) -> KdsFetcher:
    return KdsFetcher(kds.url, backoff=0.0, sleep=lambda _s: None, **kwargs)


def serve_milan(kds: FakeKds, vectors: Path) -> None:
    kds.routes["/vcek/v1/Milan/cert_chain"] = (vectors / "amd-roots/ask_ark_milan.pem").read_bytes()
    kds.routes["/vcek/v1/Milan/crl"] = (vectors / "amd-roots/crl_milan_2022-05-09.der").read_bytes()
    kds.routes[GO_SEV_GUEST_VCEK_PATH] = (
        vectors / "sev-snp/go-sev-guest/vcek_milan.der"
    ).read_bytes()


def test_fetch_everything_then_work_offline_from_the_cache(
    kds: FakeKds,
    vectors: Path,
    tmp_path: Path,
    vector_by_id: Callable[[str], dict[str, Any]],
    load_report: Callable[[dict[str, Any]], bytes],
) -> None:
    serve_milan(kds, vectors)
    report = load_report(vector_by_id("snp-milan-v2-go-sev-guest"))
    # KDS serves the Milan CRL of 2022 (nextUpdate 2023-05-09): stale now, so say so.
    text = '[snp]\naccept_any_workload = true\nallow_debug = true\ncrl = "if-available"'
    policy = Policy.from_toml(text, source="p", base_dir=tmp_path)
    online = TrustStore(cache_dir=tmp_path / "cache", fetcher=fetcher(kds))
    now = at("2025-01-01T00:00:00Z")
    # A v2 report has no CPUID: the operator names the product so the VCEK can be fetched.
    verdict = verify_report(report, policy=policy, trust=online, now=now, product=Product.MILAN)
    assert verdict.accepted, (verdict.reason, verdict.error)
    assert GO_SEV_GUEST_VCEK_PATH in kds.requests
    assert "/vcek/v1/Milan/cert_chain" in kds.requests
    assert "/vcek/v1/Milan/crl" in kds.requests  # no current CRL at hand: it was fetched
    assert verdict.revocation_checked is False
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert "Milan_VCEK_cert_chain.pem" in cached
    assert "Milan_VCEK.crl" in cached
    assert any(name.startswith("vcek_Milan_3ac3fe21") for name in cached)
    assert not any(name.endswith(".tmp") for name in cached)
    seen = len(kds.requests)
    offline = TrustStore(cache_dir=tmp_path / "cache")
    again = verify_report(report, policy=policy, trust=offline, now=now, product=Product.MILAN)
    assert again.accepted
    assert len(kds.requests) == seen


def test_retries_on_server_errors(kds: FakeKds, vectors: Path) -> None:
    serve_milan(kds, vectors)
    kds.failures["/vcek/v1/Milan/crl"] = [503, 500]
    said: list[str] = []
    data = fetcher(kds, retries=3, progress=said.append).crl(Product.MILAN, "VCEK")
    assert data == (vectors / "amd-roots/crl_milan_2022-05-09.der").read_bytes()
    assert kds.requests.count("/vcek/v1/Milan/crl") == 3
    # A person waiting on the network sees each fetch and each retry.
    url = f"{kds.url}/vcek/v1/Milan/crl"
    assert said == [
        f"fetching {url}",
        "HTTP 503; retrying in 0 s",
        f"fetching {url}",
        "HTTP 500; retrying in 0 s",
        f"fetching {url}",
    ]


def test_gives_up_after_retries_and_on_404(kds: FakeKds, vectors: Path) -> None:
    serve_milan(kds, vectors)
    kds.failures["/vcek/v1/Milan/crl"] = [503] * 10
    with pytest.raises(CollateralMissingError, match="HTTP 503"):
        fetcher(kds, retries=2).crl(Product.MILAN, "VCEK")
    assert kds.requests.count("/vcek/v1/Milan/crl") == 3
    with pytest.raises(CollateralMissingError, match="HTTP 404"):
        fetcher(kds, retries=2).cert_chain(Product.GENOA, "VCEK")
    assert kds.requests.count("/vcek/v1/Genoa/cert_chain") == 1  # a 404 is final


def test_timeout(kds: FakeKds, vectors: Path) -> None:
    serve_milan(kds, vectors)
    kds.delay = 0.3
    with pytest.raises(CollateralMissingError, match="Timeout"):
        fetcher(kds, retries=1, timeout=0.05).crl(Product.MILAN, "VCEK")


def test_vlek_and_turin_urls(kds: FakeKds) -> None:
    from donjon.attestation.snp.report import TcbVersion

    with pytest.raises(CollateralMissingError):
        fetcher(kds, retries=0).cert_chain(Product.GENOA, "VLEK")
    with pytest.raises(CollateralMissingError):
        fetcher(kds, retries=0).vcek(
            Product.TURIN, bytes(range(64)), TcbVersion(bl=1, tee=2, snp=3, ucode=4, fmc=5)
        )
    assert kds.requests == [
        "/vlek/v1/Genoa/cert_chain",
        # Turin: 8-byte hwID and an fmcSPL (AMD KDS interface spec).
        "/vcek/v1/Turin/0001020304050607?fmcSPL=5&blSPL=1&teeSPL=2&snpSPL=3&ucodeSPL=4",
    ]


def test_a_forged_root_from_the_network_is_refused(
    kds: FakeKds,
    tmp_path: Path,
    snp_vector: Callable[[str], SnpVector],
) -> None:
    forged = make_amd("Milan")
    kds.routes["/vcek/v1/Milan/cert_chain"] = forged.ask.public_bytes(
        Encoding.PEM
    ) + forged.ark.public_bytes(Encoding.PEM)
    vector = snp_vector("snp-milan-v2-virtee")
    verdict = verify_report(
        vector.report,
        policy=Policy.default(),
        trust=TrustStore(cache_dir=tmp_path, fetcher=fetcher(kds)),
        now=at("2025-01-01T00:00:00Z"),
        vcek=vector.vcek,
    )
    assert isinstance(verdict.error, FingerprintMismatchError)


def test_a_failed_crl_fetch_is_named_in_the_refusal(
    kds: FakeKds,
    vectors: Path,
    tmp_path: Path,
    snp_vector: Callable[[str], SnpVector],
) -> None:
    serve_milan(kds, vectors)
    kds.failures["/vcek/v1/Milan/crl"] = [503] * 10
    vector = snp_vector("snp-milan-v2-virtee")
    trust = TrustStore(cache_dir=tmp_path, fetcher=fetcher(kds, retries=0))
    args: dict[str, Any] = {"trust": trust, "now": at("2025-01-01T00:00:00Z")}
    refused = verify_report(vector.report, policy=Policy.default(), vcek=vector.vcek, **args)
    assert refused.reason == "snp.crl"
    assert isinstance(refused.error, CrlMissingError)
    assert "/vcek/v1/Milan/crl failed (HTTP 503)" in (refused.error.hint or "")
    lenient = verify_report(
        vector.report,
        policy=Policy.default(),
        vcek=vector.vcek,
        crl_mode="if-available",
        **args,
    )
    assert lenient.accepted
    revocation = next(c for c in lenient.checks if c.id == "snp.revocation")
    assert revocation.reason.startswith("NOT CHECKED") and "HTTP 503" in revocation.reason
