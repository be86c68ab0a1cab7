"""Process start for hello world with a warm module cache, Donjon vs wasmtime CLI,
and where Donjon's time goes.

Wall time from spawn to exit of ``donjon run-wasm hello.wasm`` and ``wasmtime run
hello.wasm`` (both caches warm). Goal: Donjon <= 2x wasmtime. The breakdown:
a bare interpreter, the imports of the run-wasm path (``python -X importtime``),
and, in-process, engine creation, module load from the cache (deserialize),
linking the WASI host, instantiation and ``_start``.

    python bench/wasi_startup.py [--repeat 15] [--json]
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, alternate, build, donjon_cmd, parse_args, report, wall_time, wasmtime_cmd


def _top_level_imports(cmd: list[str]) -> list[tuple[str, float]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True, check=False
    )
    rows: list[tuple[str, float]] = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(3)) == 1:  # top level: one space of indentation
            rows.append((m.group(4), int(m.group(2)) / 1e6))
    return rows


def import_breakdown(wasm: Path, top: int = 6) -> tuple[float, list[tuple[str, float]]]:
    """Import time a run adds over a bare interpreter, and its slowest top-level imports.

    -X importtime inflates what it measures, so these are upper bounds."""
    bare = {name for name, _ in _top_level_imports(["-c", "pass"])}
    rows = [r for r in _top_level_imports(donjon_cmd(wasm)[1:]) if r[0] not in bare]
    return sum(t for _, t in rows), sorted(rows, key=lambda r: -r[1])[:top]


def in_process_phases(wasm: Path, repeat: int) -> dict[str, float]:
    """Time each phase of donjon.wasi.runner.run by hand (median seconds)."""
    from donjon.wasi import runner
    from donjon.wasi.api import RunSpec, Stdio, StdioKind
    from donjon.wasi.cache import default_cache_dir
    from donjon.wasi.context import HostContext
    from donjon.wasi.fastcall import FastLinker
    from donjon.wasi.fdtable import FdTable
    from donjon.wasi.host import WasiHost

    null = Stdio(StdioKind.NULL)
    spec = RunSpec(module=wasm, args=["hello.wasm"], stdout=null, cache_dir=default_cache_dir())
    samples: dict[str, list[float]] = {}

    def lap(name: str, start: float) -> float:
        now = time.perf_counter()
        samples.setdefault(name, []).append(now - start)
        return now

    for _ in range(repeat):
        t = time.perf_counter()
        flags = runner.EngineFlags(epoch_interruption=False)
        engine = flags.engine()
        t = lap("engine", t)
        module = runner.load_module(spec, engine, flags)
        runner.check_wasi_command(module, str(wasm))
        t = lap("module load (cache hit: deserialize)", t)
        import wasmtime

        store = wasmtime.Store(engine)
        fds = FdTable.build((spec.stdin, spec.stdout, spec.stderr), [], [])
        ctx = HostContext(args=[b"hello.wasm"], env=[], fds=fds, limits=spec.limits)
        host = WasiHost(ctx)
        linker = FastLinker(engine)
        host.define(linker)
        t = lap("store + WASI host + linker", t)
        instance = linker.linker.instantiate(store, module)
        exports = instance.exports(store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        ctx.memory = runner._guest_memory(store, memory)
        t = lap("instantiate", t)
        start = exports["_start"]
        assert isinstance(start, wasmtime.Func)
        with contextlib.suppress(wasmtime.WasmtimeError):
            start(store)
        t = lap("_start", t)
        fds.close_all()
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    args = parse_args(__doc__ or "", default_repeat=15)
    wasm = build("bench/hello.c")
    wall_time(donjon_cmd(wasm))  # warm both module caches
    wall_time(wasmtime_cmd(wasm))
    ours, theirs = alternate(
        args.repeat, lambda: wall_time(donjon_cmd(wasm)), lambda: wall_time(wasmtime_cmd(wasm))
    )
    bare = statistics.median(wall_time([sys.executable, "-c", "pass"]) for _ in range(args.repeat))
    bare_s = statistics.median(
        wall_time([sys.executable, "-S", "-c", "pass"]) for _ in range(args.repeat)
    )
    rows = [
        Row("hello world, spawn to exit", "ms", ours * 1e3, theirs * 1e3, "ratio <= 2.00",
            ours <= 2 * theirs),
    ]  # fmt: skip
    imports, slowest = import_breakdown(wasm)
    phases = in_process_phases(wasm, max(3, args.repeat // 3))
    breakdown = {
        "python -S -c pass (bare interpreter)": bare_s,
        "site and .pth hooks (python -c pass, minus -S)": bare - bare_s,
        "imports beyond that (-X importtime)": imports,
        **phases,
    }
    accounted = sum(breakdown.values())
    notes = ["donjon breakdown (median ms):"]
    notes += [f"  {name:<46} {sec * 1e3:8.2f}" for name, sec in breakdown.items()]
    notes.append(f"  {'sum of the above':<46} {accounted * 1e3:8.2f}")
    notes.append(
        "  slowest top-level imports: " + ", ".join(f"{n} {s * 1e3:.1f}" for n, s in slowest)
    )
    if args.json:
        import json

        data = {
            "bench": "wasi_startup",
            "rows": [{"metric": r.metric, "donjon_ms": r.donjon, "wasmtime_ms": r.baseline,
                      "ratio": r.ratio, "goal": r.goal, "met": r.met} for r in rows],
            "breakdown_ms": {k: v * 1e3 for k, v in breakdown.items()},
            "slowest_imports_ms": {n: s * 1e3 for n, s in slowest},
        }  # fmt: skip
        print(json.dumps(data, indent=2))
        return
    report("wasi_startup: process start, warm cache (lower is better)", rows, False, notes)


if __name__ == "__main__":
    os.environ.setdefault("TMPDIR", tempfile.gettempdir())
    main()
