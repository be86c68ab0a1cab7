"""One TrustStore shared by many threads: the same verdicts as one thread, one fetch per miss."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from attest_fakes import at

from donjon.attestation import Product, TrustStore, load_policy, verify_csr
from donjon.attestation.snp.report import TcbVersion

STEWARD_TIME = at("2023-02-01T00:00:00Z")  # enarx-steward/README.md: inside every window
THREADS = 8


def test_concurrent_verifications_match_the_sequential_verdict(vectors: Path) -> None:
    csr = (vectors / "enarx-steward/snp_milan.signed.crl.csr").read_bytes()
    policy = load_policy(vectors / "enarx-steward/steward_testdata_policy.toml")
    tampered = bytearray(csr)
    tampered[-5] ^= 0x01
    jobs = [csr if i % 4 else bytes(tampered) for i in range(64)]
    trust = TrustStore.offline(vectors)  # cold: the first threads race to fill every cache
    barrier = threading.Barrier(THREADS)  # the first call of every thread starts together
    first = threading.local()

    def verify(der: bytes) -> tuple[bool, str | None, tuple[tuple[str, bool], ...]]:
        if not getattr(first, "done", False):
            first.done = True
            barrier.wait(timeout=30)
        verdict = verify_csr(der, policy=policy, trust=trust, now=STEWARD_TIME)
        return verdict.accepted, verdict.reason, tuple((c.id, c.passed) for c in verdict.checks)

    with ThreadPoolExecutor(THREADS) as pool:
        concurrent = list(pool.map(verify, jobs))
    alone = TrustStore.offline(vectors)
    expected = {
        der: verify_csr(der, policy=policy, trust=alone, now=STEWARD_TIME) for der in set(jobs)
    }
    for der, got in zip(jobs, concurrent, strict=True):
        want = expected[der]
        assert got == (
            want.accepted,
            want.reason,
            tuple((c.id, c.passed) for c in want.checks),
        )
    assert sum(accepted for accepted, _, _ in concurrent) == 48  # the untampered ones


class CountingFetcher:
    """A collateral fetcher that is slow and counts calls, so racing threads would show."""

    def __init__(self, vcek: bytes, chain: bytes, crl: bytes) -> None:
        self.data = {"vcek": vcek, "chain": chain, "crl": crl}
        self.calls = {"vcek": 0, "chain": 0, "crl": 0}
        self.lock = threading.Lock()
        self.started = threading.Event()

    def _get(self, what: str) -> bytes:
        with self.lock:
            self.calls[what] += 1
        self.started.set()
        threading.Event().wait(0.05)  # long enough for every other thread to miss too
        return self.data[what]

    def vcek(self, product: Product, chip_id: bytes, tcb: TcbVersion) -> bytes:
        return self._get("vcek")

    def cert_chain(self, product: Product, kind: str) -> bytes:
        return self._get("chain")

    def crl(self, product: Product, kind: str) -> bytes:
        return self._get("crl")


def test_threads_that_miss_together_fetch_once(vectors: Path, tmp_path: Path) -> None:
    fetcher = CountingFetcher(
        (vectors / "sev-snp/go-sev-guest/vcek_milan.der").read_bytes(),
        (vectors / "amd-roots/ask_ark_milan.pem").read_bytes(),
        (vectors / "amd-roots/crl_milan_2022-05-09.der").read_bytes(),
    )
    trust = TrustStore(cache_dir=tmp_path / "cache", fetcher=fetcher)
    tcb = TcbVersion(bl=2, tee=0, snp=5, ucode=68)
    chip = bytes(64)
    now = at("2022-06-01T00:00:00Z")  # inside the 2022-05-09 CRL's window

    def work(_: int) -> tuple[str, int, str]:
        ark = trust.ark(Product.MILAN)
        crls = trust.crls(Product.MILAN, "VCEK", now)
        vcek = trust.endorsement_key(Product.MILAN, chip, tcb)
        assert vcek is not None
        return ark.subject.rfc4514_string(), len(crls), vcek.tbs_certificate_bytes.hex()

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(work, range(THREADS * 2)))
    assert len(set(results)) == 1
    assert results[0][1] == 1
    assert fetcher.calls == {"vcek": 1, "chain": 1, "crl": 1}
