"""Small helpers shared by the benchmarks: building programs, timing runs, printing tables.

Every bench runs Donjon and its baseline side by side in the same process tree,
alternating runs, and prints one table (or ``--json``) with the ratio and the
goal. Numbers are medians over ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = REPO / "tests" / "programs"

# Certificates, TLS contexts and free ports come from the tests' shared support package.
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
from support.net import free_port as free_port  # noqa: E402
from support.pki import unverified_client_context as unverified_client_context  # noqa: E402
from support.pki import write_self_signed as write_self_signed  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One line of a result table. ``higher_is_better`` decides which way the ratio reads."""

    metric: str
    unit: str
    donjon: float
    baseline: float
    goal: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float:
        return self.donjon / self.baseline if self.baseline else float("inf")


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until ``proc`` listens on 127.0.0.1:``port``; the bench stops if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server did not listen on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()


@contextmanager
def serving(proc: subprocess.Popen[bytes], port: int) -> Iterator[int]:
    """``port`` once ``proc`` listens on it; ``proc`` is killed when the block ends."""
    try:
        wait_port(port, proc)
        yield port
    finally:
        stop(proc)


def parse_args(
    description: str, default_repeat: int = 5, *, size: tuple[str, int, str] | None = None
) -> argparse.Namespace:
    """``--json``, ``--repeat`` and, when given as (flag, default, help), the workload's size."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--repeat", type=int, default=default_repeat, help="runs per runtime (median is kept)"
    )
    if size is not None:
        flag, default, help_text = size
        parser.add_argument(flag, type=int, default=default, help=help_text)
    return parser.parse_args()


def build(relative: str) -> Path:
    """Build a program under tests/programs with the project's cached toolchain."""
    from donjon import toolchain

    return toolchain.build(PROGRAMS / relative)


def wasmtime_cmd(wasm: Path, *args: str) -> list[str]:
    from donjon import toolchain

    return [str(toolchain.wasmtime_cli()), "run", str(wasm), *args]


def donjon_cmd(wasm: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "donjon.cli.main", "run-wasm", str(wasm), *args]


def drain(stream: IO[bytes] | int) -> threading.Thread:
    """Read a pipe to EOF on a thread, into one reused 1 MiB buffer (no allocation per read)."""

    def reader() -> None:
        fd = stream if isinstance(stream, int) else stream.fileno()
        buffer = [bytearray(1 << 20)]
        while os.readv(fd, buffer):
            pass

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    return thread


def run_self_timed(cmd: Sequence[str], stdin: IO[bytes] | int | None = None) -> dict[str, int]:
    """Run a program that reports ``key=<int>`` pairs on stderr; stdout goes into a pipe."""
    proc = subprocess.Popen(list(cmd), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    reader = drain(proc.stdout)
    err = proc.stderr.read().decode()
    proc.wait()
    reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit {proc.returncode}: {err.strip()[-300:]}")
    found = dict(re.findall(r"(\w+)=(\d+)", err))
    return {key: int(value) for key, value in found.items()}


def wall_time(cmd: Sequence[str]) -> float:
    """Seconds from spawn to exit, output discarded into a pipe."""
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.decode().strip()[-300:]}")
    return elapsed


def samples(
    repeat: int, donjon: Callable[[], float], baseline: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """``repeat`` runs of each, interleaved so drift hits both the same."""
    ours, theirs = [], []
    for _ in range(repeat):
        ours.append(donjon())
        theirs.append(baseline())
    return ours, theirs


def alternate(
    repeat: int, donjon: Callable[[], float], baseline: Callable[[], float]
) -> tuple[float, float]:
    """Median of ``repeat`` interleaved runs of each."""
    ours, theirs = samples(repeat, donjon, baseline)
    return statistics.median(ours), statistics.median(theirs)


def report(title: str, rows: Sequence[Row], as_json: bool, notes: Sequence[str] = ()) -> None:
    if as_json:
        out = {
            "bench": title,
            "rows": [{**asdict(r), "ratio": round(r.ratio, 4)} for r in rows],
            "notes": list(notes),
        }
        print(json.dumps(out, indent=2))
        return
    headers = ("metric", "donjon", "baseline", "ratio", "goal", "met")
    table = [
        (
            r.metric,
            f"{r.donjon:,.3f} {r.unit}",
            f"{r.baseline:,.3f} {r.unit}",
            f"{r.ratio:.3f}",
            r.goal,
            "" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table, strict=True)]
    print(title)
    for line in (headers, *table):
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))
    for note in notes:
        print("  " + note)


def vectors_dir() -> Path | None:
    """``$DONJON_VECTORS`` or ``../shared/vectors``, as the tests look for them."""
    env = os.environ.get("DONJON_VECTORS")
    for path in ([Path(env)] if env else []) + [REPO.parent / "shared" / "vectors"]:
        if (path / "expected.json").is_file():
            return path
    return None


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second over about ``seconds`` of wall time."""
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            fn()
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


@contextmanager
def throwaway_postgres(*, durable: bool = False) -> Iterator[str]:
    """The URL of a PostgreSQL cluster from Debian's package on 127.0.0.1, gone at the end.

    ``durable``: commits are flushed to disk as PostgreSQL's defaults say (``fsync=on``);
    otherwise ``fsync=off``, for benches that time reads, not commits."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise SystemExit("--postgres: PostgreSQL is not installed (scripts/install-system-deps)")
    bindir = Path(found[-1]).parent
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="donjon-bench-pg-"))
    if prefix:
        shutil.chown(base, "postgres")
    port = free_port()
    data = base / "data"

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    fsync = "-c fsync=on -c synchronous_commit=on" if durable else "-c fsync=off"
    run(str(bindir / "initdb"), "-D", str(data), "-U", "donjon", "-A", "trust", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 {fsync}", "start")  # fmt: skip
    try:
        yield f"postgresql://donjon@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
