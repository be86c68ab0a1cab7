"""One-byte fd_write calls per second: the cost of one host call, Donjon vs wasmtime CLI.

The guest makes N raw fd_write(1 byte) calls to stdout, a pipe drained by the
bench, and times the loop itself. Goal: Donjon's rate >= 50% of wasmtime's.

    python bench/wasi_write1.py [--repeat 5] [--json] [--calls 300000]
"""

from __future__ import annotations

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


def rate(cmd: list[str]) -> float:
    found = run_self_timed(cmd)
    return found["calls"] / (found["ns"] / 1e9)


def main() -> None:
    args = parse_args(__doc__ or "", size=("--calls", 300000, "fd_write calls per run"))
    calls = str(args.calls)
    wasm = build("bench/write1.c")
    rate(donjon_cmd(wasm, "1000"))  # warm both module caches
    rate(wasmtime_cmd(wasm, "1000"))
    ours, theirs = alternate(
        args.repeat,
        lambda: rate(donjon_cmd(wasm, calls)),
        lambda: rate(wasmtime_cmd(wasm, calls)),
    )
    row = Row(
        f"1-byte fd_write to a pipe, {calls} calls",
        "calls/s",
        ours,
        theirs,
        goal="ratio >= 0.50",
        met=ours / theirs >= 0.5,
    )
    notes = [f"per call: donjon {1e6 / ours:.2f} us, wasmtime {1e6 / theirs:.2f} us"]
    report("wasi_write1: host-call rate (higher is better)", [row], args.json, notes)


if __name__ == "__main__":
    main()
