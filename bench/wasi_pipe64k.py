"""64 KiB fd_write and fd_read throughput through a pipe, Donjon vs wasmtime CLI.

Two write harnesses, run interleaved in one run:

* Python reader: the guest writes ``--mib`` MiB of 64 KiB blocks to stdout, a
  pipe that this script drains on a thread;
* cat: the guest writes ``--cat-mib`` MiB (default 1 GiB) of 64 KiB blocks into
  ``cat > /dev/null``, as a shell pipeline would.

read: ``head -c`` from /dev/zero feeds the guest's stdin pipe; the guest reads to
EOF. The guest times itself in every case. The pipes are created by this
script with the kernel's default size unless ``--pipe-size`` says otherwise.
Goal: Donjon >= 100% of wasmtime's rate.

The notes give the writer's voluntary context switches per MiB (how often it
slept on a full pipe), the machine and the load average: on an idle VM every
such sleep costs two cross-CPU wake-ups.

    python bench/wasi_pipe64k.py [--repeat 5] [--json] [--mib 512] [--cat-mib 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common import Row, build, donjon_cmd, drain, report, wasmtime_cmd

try:
    import fcntl
except ImportError:  # pragma: no cover - the bench needs Linux for --pipe-size only
    fcntl = None  # type: ignore[assignment]


#: who drains the guest's stdout: this script on a thread, or ``cat > /dev/null``
READERS = ("python", "cat")


@dataclass(frozen=True)
class Sample:
    mib_per_s: float
    #: voluntary context switches of the writer per MiB written
    sleeps_per_mib: float


def _pipe(size: int | None) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    if size is not None and fcntl is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, size)
    return read_end, write_end


def write_sample(cmd: list[str], mib: int, reader: str, pipe_size: int | None) -> Sample:
    """Run the writer guest into a pipe read by ``reader`` ("python" or "cat")."""
    read_end, write_end = _pipe(pipe_size)
    cat = None
    thread = None
    if reader == "cat":
        cat = subprocess.Popen(["cat"], stdin=read_end, stdout=subprocess.DEVNULL)
        os.close(read_end)
    else:
        thread = drain(read_end)
    proc = subprocess.Popen([*cmd, "write", str(mib)], stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if cat is not None:
        cat.wait()
    if thread is not None:
        thread.join()
        os.close(read_end)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit {proc.returncode}: {err.strip()[-300:]}")
    found = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", err)}
    if found["bytes"] != mib << 20:
        raise SystemExit(f"the guest wrote {found['bytes']} bytes, not {mib << 20}")
    rate = found["bytes"] / (found["ns"] / 1e9) / 2**20
    return Sample(rate, usage.ru_nvcsw / mib)


def read_rate(cmd: list[str], mib: int, pipe_size: int | None) -> float:
    read_end, write_end = _pipe(pipe_size)
    feeder = subprocess.Popen(["head", "-c", str(mib << 20), "/dev/zero"], stdout=write_end)
    os.close(write_end)
    try:
        proc = subprocess.run([*cmd, "read"], stdin=read_end, capture_output=True, check=False)
    finally:
        os.close(read_end)
        feeder.wait()
    err = proc.stderr.decode()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed with exit {proc.returncode}: {err.strip()[-300:]}")
    found = {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", err)}
    if found["bytes"] != mib << 20:
        raise SystemExit(f"the guest read {found['bytes']} bytes, not {mib << 20}")
    return found["bytes"] / (found["ns"] / 1e9) / 2**20


def default_pipe_size() -> int | None:
    if fcntl is None or not hasattr(fcntl, "F_GETPIPE_SZ"):
        return None
    read_end, write_end = os.pipe()
    try:
        return int(fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ))
    finally:
        os.close(read_end)
        os.close(write_end)


def machine() -> str:
    cpus = os.cpu_count()
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {cpus} CPUs, "
        f"Python {platform.python_version()}"
    )


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs (median kept)")
    parser.add_argument("--mib", type=int, default=512, help="MiB per run, Python reader and read")
    parser.add_argument("--cat-mib", type=int, default=1024, help="MiB per run into cat")
    parser.add_argument(
        "--pipe-size", type=int, help="set every pipe to this many bytes first (default: kernel's)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse()
    wasm: Path = build("bench/pipe64k.c")
    runtimes = {"donjon": donjon_cmd(wasm), "wasmtime": wasmtime_cmd(wasm)}
    for cmd in runtimes.values():  # warm both module caches
        write_sample(cmd, 1, "python", args.pipe_size)
    load_before = load()
    writes: dict[tuple[str, str], list[Sample]] = {(n, r): [] for n in runtimes for r in READERS}
    reads: dict[str, list[float]] = {n: [] for n in runtimes}
    sizes = {"python": args.mib, "cat": args.cat_mib}
    for _ in range(args.repeat):  # each case runs donjon then wasmtime, back to back
        for reader in READERS:
            for name, cmd in runtimes.items():
                writes[(name, reader)].append(
                    write_sample(cmd, sizes[reader], reader, args.pipe_size)
                )
        for name, cmd in runtimes.items():
            reads[name].append(read_rate(cmd, args.mib, args.pipe_size))

    def rate(name: str, reader: str) -> float:
        return statistics.median(s.mib_per_s for s in writes[(name, reader)])

    def sleeps(name: str, reader: str) -> float:
        return statistics.median(s.sleeps_per_mib for s in writes[(name, reader)])

    rows = []
    labels = {
        "python": f"fd_write 64 KiB x {args.mib * 16}, Python reader",
        "cat": f"fd_write 64 KiB, {args.cat_mib} MiB into cat",
    }
    for reader, label in labels.items():
        ours, theirs = rate("donjon", reader), rate("wasmtime", reader)
        rows.append(Row(label, "MiB/s", ours, theirs, "ratio >= 1.00", ours >= theirs))
    r_ours, r_theirs = statistics.median(reads["donjon"]), statistics.median(reads["wasmtime"])
    rows.append(
        Row(f"fd_read 64 KiB, {args.mib} MiB", "MiB/s", r_ours, r_theirs, "ratio >= 1.00",
            r_ours >= r_theirs)
    )  # fmt: skip
    pipe = args.pipe_size or default_pipe_size()
    notes = [
        "writer sleeps per MiB (voluntary context switches), donjon / wasmtime: "
        + ", ".join(
            f"{reader} {sleeps('donjon', reader):.1f} / {sleeps('wasmtime', reader):.1f}"
            for reader in READERS
        ),
        f"pipes created at {pipe} bytes"
        + (" (kernel default)" if not args.pipe_size else " (--pipe-size)")
        + "; donjon grows its stdio pipes to 1 MiB, the wasmtime CLI writes 4 KiB at a time",
        f"machine: {machine()}; load average before {load_before}, after {load()}",
        f"runs: {args.repeat} interleaved; python {sys.executable}",
    ]
    report("wasi_pipe64k: pipe throughput (higher is better)", rows, args.json, notes)


if __name__ == "__main__":
    main()
