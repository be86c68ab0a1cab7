"""64 KiB fd_write and fd_read throughput through a pipe, Donjon vs wasmtime CLI.

write: the guest writes MiB of 64 KiB blocks to stdout, a pipe the bench drains.
read: ``head -c`` from /dev/zero feeds the guest's stdin pipe; the guest reads to
EOF. The guest times itself in both. Goal: Donjon >= 100% of wasmtime's rate.

    python bench/wasi_pipe64k.py [--repeat 5] [--json] [--mib 512]
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from common import (
    Row,
    alternate,
    build,
    donjon_cmd,
    parse_args,
    report,
    run_self_timed,
    wasmtime_cmd,
)


def write_rate(cmd: list[str]) -> float:
    found = run_self_timed(cmd)
    return found["bytes"] / (found["ns"] / 1e9) / 2**20


def read_rate(cmd: list[str], mib: int) -> float:
    feeder = subprocess.Popen(["head", "-c", str(mib << 20), "/dev/zero"], stdout=subprocess.PIPE)
    try:
        found = run_self_timed(cmd, stdin=feeder.stdout)
    finally:
        assert feeder.stdout is not None
        feeder.stdout.close()
        feeder.wait()
    if found["bytes"] != mib << 20:
        raise SystemExit(f"the guest read {found['bytes']} bytes, not {mib << 20}")
    return found["bytes"] / (found["ns"] / 1e9) / 2**20


def main() -> None:
    args = parse_args(__doc__ or "", size=("--mib", 512, "MiB written and read per run"))
    mib: int = args.mib
    wasm: Path = build("bench/pipe64k.c")
    write_rate(donjon_cmd(wasm, "write", "1"))  # warm both module caches
    write_rate(wasmtime_cmd(wasm, "write", "1"))
    w_ours, w_theirs = alternate(
        args.repeat,
        lambda: write_rate(donjon_cmd(wasm, "write", str(mib))),
        lambda: write_rate(wasmtime_cmd(wasm, "write", str(mib))),
    )
    r_ours, r_theirs = alternate(
        args.repeat,
        lambda: read_rate(donjon_cmd(wasm, "read"), mib),
        lambda: read_rate(wasmtime_cmd(wasm, "read"), mib),
    )
    rows = [
        Row(f"fd_write 64 KiB x {mib * 16}", "MiB/s", w_ours, w_theirs, "ratio >= 1.00",
            w_ours >= w_theirs),
        Row(f"fd_read 64 KiB, {mib} MiB", "MiB/s", r_ours, r_theirs, "ratio >= 1.00",
            r_ours >= r_theirs),
    ]  # fmt: skip
    report("wasi_pipe64k: pipe throughput (higher is better)", rows, args.json)


if __name__ == "__main__":
    main()
