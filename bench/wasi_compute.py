"""Compute-bound guest: Donjon vs the wasmtime CLI, process start excluded.

The guest times its own loop with clock_time_get(monotonic); both runtimes run
the same module with stdout into a pipe. Goal: Donjon within 1.05x.

    python bench/wasi_compute.py [--repeat 5] [--json] [--millions 300]
"""

from __future__ import annotations

import statistics

from common import (
    Row,
    build,
    donjon_cmd,
    parse_args,
    report,
    run_self_timed,
    samples,
    wasmtime_cmd,
)


def main() -> None:
    args = parse_args(
        __doc__ or "", default_repeat=5, size=("--millions", 300, "loop iterations, in millions")
    )
    millions = str(args.millions)
    wasm = build("bench/compute.c")
    # warm both module caches first
    run_self_timed(donjon_cmd(wasm, "1"))
    run_self_timed(wasmtime_cmd(wasm, "1"))
    ours, theirs = samples(
        args.repeat,
        lambda: run_self_timed(donjon_cmd(wasm, millions))["ns"] / 1e9,
        lambda: run_self_timed(wasmtime_cmd(wasm, millions))["ns"] / 1e9,
    )
    rows = []
    # The best run is the least disturbed by other load; the median shows the spread.
    for stat, pick in (("best", min), ("median", statistics.median)):
        a, b = pick(ours), pick(theirs)
        rows.append(
            Row(
                f"compute, {millions}M iterations ({stat})",
                "s",
                a,
                b,
                "ratio <= 1.05",
                a / b <= 1.05,
            )
        )
    notes = [f"runs: donjon {fmt(ours)}; wasmtime {fmt(theirs)}"]
    report("wasi_compute: guest-timed compute (lower is better)", rows, args.json, notes)


def fmt(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


if __name__ == "__main__":
    main()
