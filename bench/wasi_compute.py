"""Compute-bound guest: Donjon vs the wasmtime CLI, process start excluded.

The guest times its own loop with clock_time_get(monotonic); both runtimes run
the same module with stdout into a pipe. Goal: Donjon within 1.05x.

    python bench/wasi_compute.py [--repeat 5] [--json] [--millions 300]
"""

from __future__ import annotations

import sys

from common import Row, alternate, build, donjon_cmd, report, run_self_timed, wasmtime_cmd


def main() -> None:
    millions = "300"
    if "--millions" in sys.argv:
        i = sys.argv.index("--millions")
        millions = sys.argv[i + 1]
        del sys.argv[i : i + 2]
    from common import parse_args

    args = parse_args(__doc__ or "", default_repeat=5)
    wasm = build("bench/compute.c")
    # warm both module caches first
    run_self_timed(donjon_cmd(wasm, "1"))
    run_self_timed(wasmtime_cmd(wasm, "1"))
    ours, theirs = alternate(
        args.repeat,
        lambda: run_self_timed(donjon_cmd(wasm, millions))["ns"] / 1e9,
        lambda: run_self_timed(wasmtime_cmd(wasm, millions))["ns"] / 1e9,
    )
    row = Row(
        f"compute loop, {millions}M iterations",
        "s",
        ours,
        theirs,
        goal="ratio <= 1.05",
        met=ours / theirs <= 1.05,
    )
    report("wasi_compute: guest-timed compute (lower is better)", [row], args.json)


if __name__ == "__main__":
    main()
