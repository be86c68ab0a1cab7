"""Steward scale: attestations/s with 1, 2 and 4 workers, where the CPU went, CRL at 10^5.

* attestations: HTTPS ``POST /`` of Enarx's real SNP Milan CSR to ``donjon
  steward serve --workers N``, against the crypto-only bound per core
  (``verify_csr`` + signing, in one loop) taken in the same run. Goal: 2
  workers >= 1.7x 1 worker. The audit store is SQLite (WAL,
  ``synchronous=FULL``: every commit is fsynced, the default), and with
  ``--postgres`` also a throwaway PostgreSQL from Debian's package, durable
  (``fsync=on``, ``synchronous_commit=on``, its defaults).
* The client is lean, because on a 2-core box whatever it spends is taken from
  the workers: one process, 4 persistent TLS connections per worker (opened
  before the timed window), each request's bytes built once, raw ``ssl``
  sockets. Every request still gets the Steward's full work: the same CSR is
  verified, signed and audited anew each time (the Steward caches no verdict).
* Where the CPU went, per attestation: the workers' CPU (``/proc``, Linux),
  the client's (``getrusage``) and the rest of the machine's (other load: on a
  shared box the ratios are noisy, CPU times much less so), and the mean time
  to commit the audit rows (``donjon_steward_audit_commit_seconds``: SQLite
  has one writer at a time across every worker; PostgreSQL does not).
* CRL fetches/s (``GET /v1/crl``) and challenges/s (``POST /v1/challenge``), 1
  worker, the per-core rates docs/scale.md uses; and a CRL of 10^5 serials:
  its DER size and the time to read them from the store and sign it.

    python bench/steward_scale.py [--seconds 8] [--postgres] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from common import REPO, Row, free_port, report, throwaway_postgres, write_self_signed
from steward_throughput import AT, crypto_only, vectors_dir

CONNECTIONS_PER_WORKER = 4
WARM_SECONDS = 1.5

# --- the lean client ---------------------------------------------------------------------------


def request_bytes(port: int, method: str, path: str, body: bytes = b"") -> bytes:
    """One HTTP/1.1 request, built once and sent as is on a kept-alive connection."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body:
        head += f"Content-Type: application/pkcs10\r\nContent-Length: {len(body)}\r\n"
    elif method == "POST":
        head += "Content-Length: 0\r\n"
    return (head + "\r\n").encode() + body


def read_response(reader: IO[bytes]) -> int:
    """Read one response (status line, headers, Content-Length body); its status code."""
    status = reader.readline()
    if not status:
        raise ConnectionError("the Steward closed the connection")
    length = 0
    while True:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return int(status.split(b" ", 2)[1])


def _client(
    port: int, cafile: str, request: bytes, connections: int, seconds: float
) -> tuple[int, int, float, float]:
    """(answered 200, answered 503, client CPU seconds, wall seconds) over the window.

    Runs in its own process so that its CPU is its own; the connections are opened
    (TLS handshakes done) before the window starts."""
    context = ssl.create_default_context(cafile=cafile)
    socks = [
        context.wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1"
        )
        for _ in range(connections)
    ]
    ok = [0] * connections
    busy = [0] * connections
    failed: list[str] = []
    go = threading.Event()

    def run(i: int) -> None:
        sock = socks[i]
        reader = sock.makefile("rb")
        go.wait()
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                sock.sendall(request)
                status = read_response(reader)
                if status == 200:
                    ok[i] += 1
                elif status == 503:
                    busy[i] += 1
                else:
                    failed.append(f"answered {status}")
                    return
        except (OSError, ValueError) as exc:
            failed.append(str(exc))
        finally:
            sock.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    if failed:
        raise SystemExit(f"the bench client failed: {failed[0]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return sum(ok), sum(busy), cpu, wall


# --- CPU accounting (Linux /proc; elsewhere only rates) ------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the ``--workers`` processes), or [] without /proc."""
    found = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    except OSError:
        return []
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy() -> float | None:
    """CPU seconds the whole machine spent so far (every process, every core), if known."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def commit_stats(port: int, context: ssl.SSLContext) -> tuple[float, float]:
    """(count, sum of seconds) of ``donjon_steward_audit_commit_seconds``, over every worker."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    count = total = 0.0
    for line in text.splitlines():
        if line.startswith("donjon_steward_audit_commit_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith("donjon_steward_audit_commit_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
    return count, total


@dataclass(frozen=True)
class Window:
    """One timed window against one Steward."""

    ok: int
    refused_busy: int
    wall: float
    client_cpu: float
    worker_cpu: tuple[float, ...]  # per process of the Steward (empty without /proc)
    machine_cpu: float | None  # every process on the machine
    commits: float
    commit_seconds: float

    @property
    def rate(self) -> float:
        return self.ok / self.wall

    def per_request_ms(self, seconds: float) -> float:
        return 1000 * seconds / max(self.ok, 1)

    @property
    def server_ms(self) -> float:
        return self.per_request_ms(sum(self.worker_cpu))

    @property
    def client_ms(self) -> float:
        return self.per_request_ms(self.client_cpu)

    @property
    def other_ms(self) -> float | None:
        """What the rest of the machine spent per request (other load, and this bench)."""
        if self.machine_cpu is None:
            return None
        return self.per_request_ms(self.machine_cpu - sum(self.worker_cpu) - self.client_cpu)

    @property
    def commit_ms(self) -> float:
        return 1000 * self.commit_seconds / self.commits if self.commits else 0.0

    def shares(self) -> str:
        busy = [c for c in self.worker_cpu if c > 0.05 * self.wall]  # not the idle supervisor
        total = sum(busy) or 1.0
        return "/".join(f"{100 * c / total:.0f}%" for c in busy)


def measure(
    proc: subprocess.Popen[bytes], port: int, cafile: str, request: bytes, connections: int,
    seconds: float,
) -> Window:  # fmt: skip
    context = ssl.create_default_context(cafile=cafile)
    pids = process_tree(proc.pid)
    commits0 = commit_stats(port, context)
    cpu0 = [cpu_seconds(p) for p in pids]
    machine0 = machine_busy()
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        ok, busy, client_cpu, wall = pool.apply(
            _client, (port, cafile, request, connections, seconds)
        )
    machine1 = machine_busy()
    cpu1 = [cpu_seconds(p) for p in pids]
    commits1 = commit_stats(port, context)
    return Window(
        ok=ok,
        refused_busy=busy,
        wall=wall,
        client_cpu=client_cpu,
        worker_cpu=tuple(b - a for a, b in zip(cpu0, cpu1, strict=True)),
        # The pool's start and stop fall outside the client's window but inside this one.
        machine_cpu=None if machine0 is None or machine1 is None else machine1 - machine0,
        commits=commits1[0] - commits0[0],
        commit_seconds=commits1[1] - commits0[1],
    )


# --- the Steward under test --------------------------------------------------------------------


def serve(
    work: Path, vectors: Path, workers: int, db: str | None
) -> tuple[subprocess.Popen[bytes], int, str]:
    cert, key = write_self_signed(
        work, common_name="bench", cert_name="tls.pem", key_name="tls.key"
    )
    port = free_port()
    state = work / f"state-{uuid.uuid4().hex[:8]}"
    cmd = [
        sys.executable, "-m", "donjon.cli.main", "steward", "serve",
        "--dir", str(state), "--init",
        "--policy", str(vectors / "enarx-steward" / "steward_testdata_policy.toml"),
        "--trust-dir", str(vectors), "--now", AT.isoformat(),
        "--tls-cert", str(cert), "--tls-key", str(key), "--port", str(port),
        "--log-level", "warning", "--workers", str(workers), "--drain-seconds", "0",
        *(["--db", db] if db else []),
    ]  # fmt: skip
    log_path = work / f"steward-{workers}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"the Steward did not start; see {log_path}")
        time.sleep(0.2)
    if workers > 1:  # every worker up (the first alone answers /readyz)
        while len(process_tree(proc.pid)) <= workers and time.monotonic() < deadline:
            time.sleep(0.2)
    return proc, port, str(cert)


@contextmanager
def running(
    work: Path, vectors: Path, workers: int, db: str | None
) -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    proc, port, cafile = serve(work, vectors, workers, db)
    try:
        yield proc, port, cafile
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def fresh_database(base_url: str) -> str:
    """A new empty database on the throwaway PostgreSQL (each Steward starts empty)."""
    import psycopg

    name = f"audit_{uuid.uuid4().hex}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base_url.rsplit("/", 1)[0] + "/" + name


def scale(
    work: Path, vectors: Path, csr: bytes, seconds: float, base_url: str | None
) -> dict[int, Window]:
    windows: dict[int, Window] = {}
    for workers in (1, 2, 4):
        db = fresh_database(base_url) if base_url else None
        with running(work, vectors, workers, db) as (proc, port, cafile):
            request = request_bytes(port, "POST", "/", csr)
            connections = CONNECTIONS_PER_WORKER * workers
            measure(proc, port, cafile, request, connections, WARM_SECONDS)  # warm every worker
            windows[workers] = measure(proc, port, cafile, request, connections, seconds)
    return windows


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


# --- the report ----------------------------------------------------------------------------------


def engine_rows(engine: str, w: dict[int, Window], bound: float) -> list[Row]:
    one, two, four = w[1], w[2], w[4]
    return [
        Row(f"{engine}: attestations/s, 1 worker", "/s", one.rate, bound, "(per core vs bound)"),
        Row(f"{engine}: attestations/s, 2 workers", "/s", two.rate, one.rate, ">= 1.70x 1 worker",
            two.rate >= 1.7 * one.rate),
        Row(f"{engine}: attestations/s, 4 workers", "/s", four.rate, one.rate, "(informative)"),
        Row(f"{engine}: worker CPU per attestation, 2 workers", "ms", two.server_ms,
            one.server_ms, "(vs 1 worker: waste)"),
        Row(f"{engine}: client CPU per attestation, 2 workers", "ms", two.client_ms,
            two.server_ms, "(vs the workers')"),
        Row(f"{engine}: audit commit, 2 workers", "ms", two.commit_ms, one.commit_ms,
            "(vs 1 worker: lock wait)"),
    ]  # fmt: skip


def engine_notes(engine: str, w: dict[int, Window], cores: int) -> list[str]:
    notes = []
    for workers, win in w.items():
        other = win.other_ms
        ceiling = 1000 * cores / (win.server_ms + win.client_ms) if win.server_ms else 0.0
        notes.append(
            f"{engine}, {workers} worker(s): {win.ok} answered in {win.wall:.1f} s"
            f"{f' ({win.refused_busy} got 503)' if win.refused_busy else ''}; per attestation "
            f"workers {win.server_ms:.2f} ms CPU (shares {win.shares() or 'n/a'}), client "
            f"{win.client_ms:.2f} ms, rest of the machine "
            f"{'n/a' if other is None else f'{other:.2f} ms'}; audit commit {win.commit_ms:.2f} "
            f"ms; CPU ceiling of {cores} cores at this cost {ceiling:,.0f}/s"
        )
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--crl-serials", type=int, default=100_000)
    parser.add_argument(
        "--postgres", action="store_true", help="also on a throwaway durable PostgreSQL"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    vectors = vectors_dir()
    csr = (vectors / "enarx-steward" / "snp_milan.signed.crl.csr").read_bytes()
    bound, _ = crypto_only(vectors, csr, 300)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    extra: dict[str, float] = {}
    windows: dict[str, dict[int, Window]] = {}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="donjon-scale-") as tmp:
        work = Path(tmp)
        windows["sqlite"] = scale(work, vectors, csr, args.seconds, None)
        if args.postgres:
            pg: AbstractContextManager[str] = throwaway_postgres(durable=True)
        else:
            pg = nullcontext("")
        with pg as base_url:
            if base_url:
                windows["postgresql"] = scale(work, vectors, csr, args.seconds, base_url)
        with running(work, vectors, 1, None) as (proc, port, cafile):
            for name, method, path in (("crl", "GET", "/v1/crl"),
                                       ("challenge", "POST", "/v1/challenge")):  # fmt: skip
                request = request_bytes(port, method, path)
                measure(proc, port, cafile, request, CONNECTIONS_PER_WORKER, 1.0)
                win = measure(proc, port, cafile, request, CONNECTIONS_PER_WORKER, args.seconds / 2)
                extra[name] = win.rate
        read_s, sign_s, size = crl_at_scale(args.crl_serials, work)
    one = windows["sqlite"][1].rate
    rows = [row for engine, w in windows.items() for row in engine_rows(engine, w, bound)]
    rows += [
        Row("CRL fetches/s, 1 worker", "/s", extra["crl"], one, "(vs attestations)"),
        Row("challenges/s, 1 worker", "/s", extra["challenge"], one, "(vs attestations)"),
        Row(f"CRL of {args.crl_serials} serials: read + sign", "s", read_s + sign_s, sign_s,
            "(baseline: sign only)"),
        Row(f"CRL of {args.crl_serials} serials: DER size", "MiB", size / 2**20, 0.0, ""),
    ]  # fmt: skip
    notes = [
        f"crypto-only bound (verify_csr + sign, one core): {bound:,.0f}/s; {cores} cores here",
        f"client: 1 process, {CONNECTIONS_PER_WORKER} kept-alive TLS connections per worker, "
        "request bytes built once; the Steward verifies, signs and audits every request",
        "stores: SQLite WAL synchronous=FULL (fsync per commit, the default)"
        + (
            "; PostgreSQL fsync=on synchronous_commit=on (its server's CPU is in the rest of "
            "the machine)"
            if args.postgres
            else ""
        ),
    ]
    for engine, w in windows.items():
        notes += engine_notes(engine, w, cores)
    notes += [
        f"CRL read {read_s:.2f} s, sign {sign_s:.2f} s, {size:,} bytes",
        f"load average: {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
    ]
    report("steward_scale (Enarx SNP Milan CSR at 2023-02-01)", rows, args.json, notes)


if __name__ == "__main__":
    main()
