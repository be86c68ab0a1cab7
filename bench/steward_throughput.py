"""Steward throughput: attestations/s end to end vs the crypto-only bound, same run.

End to end = HTTPS POST / of Enarx's real SNP CSR to a ``donjon steward serve``
process (TLS 1.3, verify the report and chain, sign, commit the SQLite audit
record with synchronous=FULL, answer). The Steward is one Python process, so
its rate is per core; the clients run in this process, on the other core.
Crypto-only = the same verification (``verify_csr``: CSR signature, report
signature, chain, CRLs, policy) plus signing the certificate, in a loop, with
no HTTP and no store. Goal: end to end >= 50% of the crypto-only bound.

The Keep flow (second table) is what a Donjon Keep does: ``POST /v1/challenge``,
then a CSR on the simulated TEE whose claims carry that nonce. The Steward pays
for the challenge (a random nonce, one committed row) and for accepting it once
(one conditional UPDATE) on top of the verification. The CSRs are built between
the two timed phases, because on a real host the Keep builds its own: the rate
is n / (time answering challenges + time answering CSRs).

    python bench/steward_throughput.py [--requests 400] [--clients 4] [--json]
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from common import REPO, Row, free_port, report, write_self_signed

AT = datetime(2023, 2, 1, tzinfo=UTC)
# On Linux the Steward (and the crypto-only loop) run pinned to one CPU and the clients to
# another, so "per core" means one core; elsewhere the numbers are per process.
SERVER_CPU, CLIENT_CPU = 0, 1


def pin(pid: int, cpu: int) -> bool:
    setaffinity = getattr(os, "sched_setaffinity", None)
    if setaffinity is None or cpu not in os.sched_getaffinity(0) | {cpu} or os.cpu_count() == 1:
        return False
    try:
        setaffinity(pid, {cpu})
    except OSError:
        return False
    return True


def vectors_dir() -> Path:
    env = os.environ.get("DONJON_VECTORS")
    path = Path(env) if env else REPO.parent / "shared" / "vectors"
    if not (path / "enarx-steward" / "snp_milan.signed.crl.csr").is_file():
        raise SystemExit(f"Enarx Steward vectors not found under {path} (set DONJON_VECTORS)")
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def crypto_only(vectors: Path, csr: bytes, n: int) -> tuple[float, list[float]]:
    from donjon.attestation import TrustStore, load_policy, verify_csr
    from donjon.steward.ca import CertificateAuthority
    from donjon.steward.issue import issue_certificate

    policy = load_policy(vectors / "enarx-steward" / "steward_testdata_policy.toml")
    trust = TrustStore.offline(vectors)
    ca = CertificateAuthority.create(curve="p384", now=AT)
    for _ in range(5):  # warm caches the server also warms
        issue_certificate(ca, verify_csr(csr, policy=policy, trust=trust, now=AT), policy, now=AT)
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        verdict = verify_csr(csr, policy=policy, trust=trust, now=AT)
        assert verdict.accepted, verdict.reason
        issue_certificate(ca, verdict, policy, now=AT)
        latencies.append(time.perf_counter() - t0)
    return n / (time.perf_counter() - start), latencies


def end_to_end(
    vectors: Path, csr: bytes, n: int, clients: int, work: Path
) -> tuple[float, list[float], int]:
    import httpx

    cert, key = write_self_signed(
        work, common_name="bench", cert_name="tls.pem", key_name="tls.key"
    )
    port = free_port()
    cmd = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve",
        "--dir", str(work / "state"), "--init",
        "--policy", str(vectors / "enarx-steward" / "steward_testdata_policy.toml"),
        "--trust-dir", str(vectors), "--now", AT.isoformat(),
        "--tls-cert", str(cert), "--tls-key", str(key),
        "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    log = (work / "steward.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    pin(proc.pid, SERVER_CPU)
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}"
    headers = {"Content-Type": "application/pkcs10"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/", verify=context, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_path = work / "steward.log"
                    raise SystemExit(f"the Steward did not start; see {log_path}") from None
                time.sleep(0.1)
        with httpx.Client(base_url=url, verify=context) as warm:
            for _ in range(10):
                assert warm.post("/", content=csr, headers=headers).status_code == 200
        latencies: list[float] = []
        errors = 0
        lock = threading.Lock()
        per_client = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]

        def run(count: int) -> None:
            nonlocal errors
            with httpx.Client(base_url=url, verify=context, timeout=60) as http:
                for _ in range(count):
                    t0 = time.perf_counter()
                    r = http.post("/", content=csr, headers=headers)
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        errors += r.status_code != 200

        threads = [threading.Thread(target=run, args=(c,)) for c in per_client]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rate = n / (time.perf_counter() - start)
        return rate, latencies, errors
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


# --- the Keep flow: challenge, then a sim CSR bound to it -------------------------------------


def sim_home(work: Path) -> Path:
    from donjon.keep.sim import products
    from donjon.keep.sim import state as sim_state

    home = work / "keep-state"
    product = products.Product.parse("Milan")
    default = products.DEFAULT_TCB
    tcb = default[product] if isinstance(default, dict) else default
    config = sim_state.SimConfig(product, tcb, sim_state.random_chip_id(product))
    sim_state.init(home / "sim", config)
    return home


CLAIMS_WASM = bytes(range(32))


def sim_csrs(home: Path, nonces: list[bytes]) -> list[bytes]:
    from cryptography.hazmat.primitives.serialization import Encoding

    from donjon.attestation.claims import WorkloadClaims
    from donjon.keep import identity
    from donjon.keep.platforms import sim as sim_platform

    platform = sim_platform.create(home)
    out = []
    for nonce in nonces:
        claims = WorkloadClaims(CLAIMS_WASM, b"", "bench", nonce=nonce)
        key = identity.generate_key(platform)
        out.append(identity.build_csr(key, claims, platform).public_bytes(Encoding.DER))
    return out


def sim_policy_file(home: Path, work: Path) -> Path:
    policy = work / "sim-policy.toml"
    ark = home / "sim" / "ark.pem"
    policy.write_text(f'[sim]\ntrust = "{ark}"\nallowed_workloads = ["{CLAIMS_WASM.hex()}"]\n')
    return policy


def crypto_only_keep_flow(home: Path, work: Path, n: int) -> float:
    from donjon.attestation import TrustStore, load_policy, verify_csr
    from donjon.steward.ca import CertificateAuthority
    from donjon.steward.issue import issue_certificate

    policy = load_policy(sim_policy_file(home, work))
    trust = TrustStore()
    now = datetime.now(UTC)
    ca = CertificateAuthority.create(curve="p384", now=now)
    csrs = sim_csrs(home, [os.urandom(32) for _ in range(n + 5)])
    for csr in csrs[:5]:
        issue_certificate(ca, verify_csr(csr, policy=policy, trust=trust, now=now), policy, now=now)
    start = time.perf_counter()
    for csr in csrs[5:]:
        verdict = verify_csr(csr, policy=policy, trust=trust, now=now)
        assert verdict.accepted, verdict.reason
        issue_certificate(ca, verdict, policy, now=now)
    return n / (time.perf_counter() - start)


def _spread(n: int, clients: int) -> list[int]:
    return [n // clients + (1 if i < n % clients else 0) for i in range(clients)]


def end_to_end_keep_flow(home: Path, work: Path, n: int, clients: int) -> tuple[float, int]:
    import httpx

    cert, key = write_self_signed(
        work, common_name="bench", cert_name="tls.pem", key_name="tls.key"
    )
    port = free_port()
    cmd = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dev",
        "--dir", str(work / "state"), "--init", "--policy", str(sim_policy_file(home, work)),
        "--tls-cert", str(cert), "--tls-key", str(key),
        "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    log = (work / "steward.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    pin(proc.pid, SERVER_CPU)
    context = ssl.create_default_context(cafile=str(cert))
    url = f"https://127.0.0.1:{port}"
    errors = 0
    lock = threading.Lock()
    try:
        _wait_up(url, context, proc, work)

        def fetch(count: int, into: list[bytes]) -> None:
            nonlocal errors
            with httpx.Client(base_url=url, verify=context, timeout=60) as http:
                for _ in range(count):
                    r = http.post("/v1/challenge")
                    with lock:
                        errors += r.status_code != 200
                        if r.status_code == 200:
                            into.append(bytes.fromhex(r.json()["nonce"]))

        def post(csrs: list[bytes]) -> None:
            nonlocal errors
            with httpx.Client(base_url=url, verify=context, timeout=60) as http:
                for csr in csrs:
                    r = http.post("/", content=csr, headers={"Content-Type": "application/pkcs10"})
                    with lock:
                        errors += r.status_code != 200

        warm: list[bytes] = []
        fetch(10, warm)
        post(sim_csrs(home, warm))
        nonces: list[bytes] = []
        fetchers = [threading.Thread(target=fetch, args=(c, nonces)) for c in _spread(n, clients)]
        t_challenges = _timed(fetchers)
        csrs = sim_csrs(home, nonces)  # the Keeps' own work, not the Steward's
        shares = [csrs[i::clients] for i in range(clients)]
        t_csrs = _timed([threading.Thread(target=post, args=(share,)) for share in shares])
        return n / (t_challenges + t_csrs), errors
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _timed(threads: list[threading.Thread]) -> float:
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def _wait_up(url: str, context: ssl.SSLContext, proc: subprocess.Popen[bytes], work: Path) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/", verify=context, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Steward did not start; see {work / 'steward.log'}") from None
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    vectors = vectors_dir()
    csr = (vectors / "enarx-steward" / "snp_milan.signed.crl.csr").read_bytes()
    everywhere = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    # The crypto-only bound is measured before and after the end-to-end run (drift hits both).
    pin(0, SERVER_CPU)
    before_rate, before_lat = crypto_only(vectors, csr, args.requests // 2)
    pinned = pin(0, CLIENT_CPU)
    with tempfile.TemporaryDirectory(prefix="donjon-bench-") as tmp:
        e2e_rate, e2e_lat, errors = end_to_end(vectors, csr, args.requests, args.clients, Path(tmp))
    pin(0, SERVER_CPU)
    after_rate, after_lat = crypto_only(vectors, csr, args.requests // 2)
    if everywhere:
        os.sched_setaffinity(0, everywhere)
    bound_rate = (before_rate + after_rate) / 2
    bound_lat = before_lat + after_lat
    ms = 1000.0
    rows = [
        Row(
            "attestations/s per core",
            "/s",
            e2e_rate,
            bound_rate,
            ">= 0.50x",
            e2e_rate >= 0.5 * bound_rate,
        ),
        Row(
            "latency p50", "ms", statistics.median(e2e_lat) * ms, statistics.median(bound_lat) * ms
        ),
        Row("latency p99", "ms", percentile(e2e_lat, 0.99) * ms, percentile(bound_lat, 0.99) * ms),
    ]
    notes = [
        f"donjon = end to end over HTTPS ({args.clients} clients, {args.requests} requests, "
        f"{errors} non-200); baseline = crypto-only (verify_csr + sign), same CSR, same run",
        "end-to-end latency includes queueing behind the other clients",
        f"pinned: Steward and crypto-only on CPU {SERVER_CPU}, clients on CPU {CLIENT_CPU}"
        if pinned
        else "not pinned to CPUs (no sched_setaffinity): rates are per process",
    ]
    report("steward_throughput (Enarx SNP Milan CSR at 2023-02-01)", rows, args.json, notes)
    with tempfile.TemporaryDirectory(prefix="donjon-bench-keep-") as tmp:
        work = Path(tmp)
        home = sim_home(work)
        pin(0, SERVER_CPU)
        bound_before = crypto_only_keep_flow(home, work, args.requests // 2)
        pin(0, CLIENT_CPU)
        flow_rate, flow_errors = end_to_end_keep_flow(home, work, args.requests, args.clients)
        pin(0, SERVER_CPU)
        bound_after = crypto_only_keep_flow(home, work, args.requests // 2)
        if everywhere:
            os.sched_setaffinity(0, everywhere)
    flow_bound = (bound_before + bound_after) / 2
    flow_rows = [
        Row(
            "Keep flow (challenge + CSR)/s per core",
            "/s",
            flow_rate,
            flow_bound,
            ">= 0.50x",
            flow_rate >= 0.5 * flow_bound,
        )
    ]
    flow_notes = [
        f"donjon = POST /v1/challenge then POST / of a sim CSR bound to it ({args.clients} "
        f"clients, {args.requests} Keeps, {flow_errors} non-200); rate = Keeps / (time answering "
        "challenges + time answering CSRs); baseline = verify_csr + sign of the same kind of "
        "CSR, no HTTP, no store",
    ]
    title = "steward_throughput, Keep flow (simulated TEE, fresh challenges)"
    report(title, flow_rows, args.json, flow_notes)


if __name__ == "__main__":
    main()
