"""Steward scale: attestations/s with 1, 2 and 4 workers, CRL fetches/s, and a 10^5-serial CRL.

* attestations: HTTPS ``POST /`` of Enarx's real SNP Milan CSR to ``donjon
  steward serve --workers N`` (SQLite audit store, synchronous=FULL), from
  client *processes* (so that clients do not share the Steward's GIL), against
  the crypto-only bound per core (``verify_csr`` + signing, in one loop) taken
  in the same run. Goal: 2 workers >= 1.7x 1 worker (on a 2-core machine the
  clients take CPU too, which the notes report).
* CRL fetches/s (``GET /v1/crl``, 1 worker, small CRL) and challenges/s
  (``POST /v1/challenge``), the per-core rates docs/scale.md uses.
* CRL at 10^5 revoked serials: DER size, and the time to read them from the
  store and sign the CRL.

    python bench/steward_scale.py [--seconds 8] [--json]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import REPO, Row, free_port, report, write_self_signed
from steward_throughput import AT, crypto_only, vectors_dir


def _client(url: str, cafile: str, csr: bytes, path: str, seconds: float, threads: int) -> int:
    import httpx

    context = ssl.create_default_context(cafile=cafile)
    done = [0] * threads
    deadline = time.monotonic() + seconds

    def run(i: int) -> None:
        with httpx.Client(base_url=url, verify=context, timeout=60) as http:
            while time.monotonic() < deadline:
                if path == "/":
                    r = http.post("/", content=csr, headers={"Content-Type": "application/pkcs10"})
                elif path == "/v1/challenge":
                    r = http.post(path)
                else:
                    r = http.get(path)
                if r.status_code == 200:
                    done[i] += 1
                elif r.status_code != 503:
                    raise SystemExit(f"{path} answered {r.status_code}: {r.text[:300]}")

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sum(done)


def measure(url: str, cafile: str, csr: bytes, path: str, seconds: float) -> float:
    """Requests/s that succeeded, from 2 client processes of 4 threads each."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        start = time.perf_counter()
        counts = pool.starmap(_client, [(url, cafile, csr, path, seconds, 4)] * 2)
        elapsed = time.perf_counter() - start
    return sum(counts) / max(elapsed, seconds)


def serve(work: Path, vectors: Path, workers: int) -> tuple[subprocess.Popen[bytes], str, str]:
    import httpx

    cert, key = write_self_signed(
        work, common_name="bench", cert_name="tls.pem", key_name="tls.key"
    )
    port = free_port()
    cmd = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve",
        "--dir", str(work / f"state{workers}"), "--init",
        "--policy", str(vectors / "enarx-steward" / "steward_testdata_policy.toml"),
        "--trust-dir", str(vectors), "--now", AT.isoformat(),
        "--tls-cert", str(cert), "--tls-key", str(key), "--port", str(port),
        "--log-level", "warning", "--workers", str(workers), "--drain-seconds", "0",
    ]  # fmt: skip
    log = (work / f"steward{workers}.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/readyz", verify=context, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the Steward did not start; see {work}/steward{workers}.log")
        time.sleep(0.2)
    return proc, url, str(cert)


def crl_at_scale(count: int, work: Path) -> tuple[float, float, int]:
    """(seconds to read the revoked rows, seconds to sign, DER bytes) for ``count`` serials."""
    import sqlalchemy as sa
    from cryptography.hazmat.primitives.serialization import Encoding

    from donjon.steward.ca import CertificateAuthority
    from donjon.steward.crl import build_crl
    from donjon.steward.store import AuditStore, certificates

    store = AuditStore.open(f"sqlite:///{work / 'crl.db'}")
    now = datetime.now(UTC)
    naive = now.replace(tzinfo=None)
    rows = [
        {
            "serial": format((1 << 150) + i * 7919, "x"),
            "issued_at": naive, "not_before": naive, "not_after": naive + timedelta(days=28),
            "subject_key_sha256": f"{i:064x}", "platform": "snp", "development": False,
            "workload_sha256": None, "claims": "{}", "verdict": "{}",
            "evidence_sha256": "00" * 32, "policy_digest": "00" * 32,
            "certificate_der": b"\x30\x00", "revoked_at": naive, "revocation_reason": "superseded",
        }
        for i in range(count)
    ]  # fmt: skip
    with store.engine.begin() as conn:
        conn.execute(sa.insert(certificates), rows)
    ca = CertificateAuthority.create(curve="p384", now=now)
    t0 = time.perf_counter()
    revoked = store.revoked()
    t1 = time.perf_counter()
    crl = build_crl(ca, revoked, now=now)
    t2 = time.perf_counter()
    store.close()
    return t1 - t0, t2 - t1, len(crl.public_bytes(Encoding.DER))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--crl-serials", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    vectors = vectors_dir()
    csr = (vectors / "enarx-steward" / "snp_milan.signed.crl.csr").read_bytes()
    bound, _ = crypto_only(vectors, csr, 300)
    rates: dict[int, float] = {}
    extra: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="donjon-scale-") as tmp:
        work = Path(tmp)
        for workers in (1, 2, 4):
            proc, url, cafile = serve(work, vectors, workers)
            try:
                measure(url, cafile, csr, "/", 1.0)  # warm every worker's caches
                rates[workers] = measure(url, cafile, csr, "/", args.seconds)
                if workers == 1:
                    extra["crl"] = measure(url, cafile, csr, "/v1/crl", args.seconds / 2)
                    extra["challenge"] = measure(
                        url, cafile, csr, "/v1/challenge", args.seconds / 2
                    )
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        read_s, sign_s, size = crl_at_scale(args.crl_serials, work)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [
        Row("attestations/s, 1 worker", "/s", rates[1], bound, "(per core vs bound)"),
        Row("attestations/s, 2 workers", "/s", rates[2], rates[1], ">= 1.70x 1 worker",
            rates[2] >= 1.7 * rates[1]),
        Row("attestations/s, 4 workers", "/s", rates[4], rates[1], "(informative)"),
        Row("CRL fetches/s, 1 worker", "/s", extra["crl"], rates[1], "(vs attestations)"),
        Row("challenges/s, 1 worker", "/s", extra["challenge"], rates[1], "(vs attestations)"),
        Row(f"CRL of {args.crl_serials} serials: read + sign", "s", read_s + sign_s, sign_s,
            "(baseline: sign only)"),
        Row(f"CRL of {args.crl_serials} serials: DER size", "MiB", size / 2**20, 0.0, ""),
    ]  # fmt: skip
    notes = [
        f"crypto-only bound (verify_csr + sign, one core): {bound:,.0f}/s; {cores} cores here",
        "clients: 2 processes x 4 threads on the same machine (they take CPU from the workers)",
        f"CRL read {read_s:.2f} s, sign {sign_s:.2f} s, {size:,} bytes",
        f"load average at the end: {os.getloadavg()[0]:.2f}",
    ]
    report("steward_scale (Enarx SNP Milan CSR at 2023-02-01)", rows, args.json, notes)


if __name__ == "__main__":
    main()
