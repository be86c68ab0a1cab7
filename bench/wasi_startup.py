"""Process start for hello world with a warm module cache, Donjon vs wasmtime CLI,
and where Donjon's time goes.

Wall time (and CPU time) from spawn to exit of ``donjon run-wasm hello.wasm``
and ``wasmtime run hello.wasm`` (both caches warm), interleaved. Donjon runs as
the ``donjon`` command pip installs (``bin/donjon``, its first line pointing at
the interpreter, as pip rewrites it), in two interpreters:

* a clean virtual environment (no third-party ``.pth`` start-up hooks; it sees
  the same site-packages and Donjon sources), as on a user's machine: the goal
  row, ``<= 30 ms`` (three times CPython's bare start);
* this interpreter as it is, whose ``site`` may run hooks that have nothing to
  do with Donjon (some CI images import ``certifi`` in every Python process).

The full click command (``python -m donjon.cli.main run-wasm``, what every
start was before the lean path), the console-script wrapper pip would write for a
``[project.scripts]`` entry (what the command was before ``bin/donjon``; it
imports ``re``) and the bare interpreter run beside them. The
breakdown times, in-process, engine creation, module load from the cache,
linking, instantiation and ``_start``.

    python bench/wasi_startup.py [--repeat 15] [--json]
"""

from __future__ import annotations

import contextlib
import os
import site
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from common import Row, build, parse_args, report, wasmtime_cmd

GOAL_MS = 30.0


def spawn(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds from spawn to exit; output goes into pipes, as in a script."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {err.decode().strip()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def clean_environment() -> Iterator[Path]:
    """A venv whose ``site`` runs no third-party hooks, seeing our packages; its python."""
    with tempfile.TemporaryDirectory(prefix="donjon-startup-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        found = subprocess.run(
            [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
            capture_output=True,
            text=True,
            check=True,
        )
        import donjon

        # Bytecode as an installed package has it (PYTHONDONTWRITEBYTECODE may be set here).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        package = Path(donjon.__file__).resolve().parent
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(package)], env=env, check=True
        )
        # Plain path lines: these folders are searched, their own .pth hooks are not run.
        lines = [str(package.parent), *site.getsitepackages()]
        Path(found.stdout.strip(), "donjon-bench.pth").write_text("\n".join(lines) + "\n")
        yield python


def installed_script(python: Path, folder: Path) -> list[str]:
    """``bin/donjon`` as pip installs it for ``python`` (``#!`` line rewritten), as a command."""
    source = Path(__file__).resolve().parent.parent / "bin" / "donjon"
    body = source.read_text().split("\n", 1)[1]
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "donjon"
    script.write_text(f"#!{python}\n{body}")
    script.chmod(0o755)
    return [str(python), str(script)]


def console_script(python: Path, folder: Path) -> list[str]:
    """The ``donjon`` console script pip would write for ``python``, as a command."""
    try:
        from pip._vendor.distlib.scripts import ScriptMaker
    except ImportError:  # no pip here: the closest thing
        return [str(python), "-m", "donjon"]
    maker = ScriptMaker(None, str(folder))
    maker.executable = str(python)
    maker.variants = {""}
    (path,) = maker.make("donjon = donjon.cli.entry:main")
    return [str(python), path]


def in_process_phases(wasm: Path, repeat: int) -> dict[str, float]:
    """Time each phase of donjon.wasi.runner.run by hand (median seconds)."""
    from donjon.wasi import capi, runner
    from donjon.wasi.api import RunSpec, Stdio, StdioKind
    from donjon.wasi.cache import default_cache_path
    from donjon.wasi.context import HostContext
    from donjon.wasi.fastcall import FastLinker
    from donjon.wasi.fdtable import FdTable
    from donjon.wasi.host import WasiHost

    null = Stdio(StdioKind.NULL)
    spec = RunSpec(module=wasm, args=["hello.wasm"], stdout=null, cache_dir=default_cache_path())
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
        imported = runner.check_wasi_command(module, str(wasm))
        t = lap("module load (cache hit: digest + deserialize)", t)
        store = capi.Store(engine)
        fds = FdTable.build((spec.stdin, spec.stdout, spec.stderr), [], [])
        ctx = HostContext(args=[b"hello.wasm"], env=[], fds=fds, limits=spec.limits)
        linker = FastLinker(engine)
        WasiHost(ctx).define(linker, imported)
        t = lap("store + WASI host + linker", t)
        instance = linker.linker.instantiate(store, module)
        memory = store.export(instance, "memory")
        start = store.export(instance, "_start")
        assert memory is not None and start is not None
        ctx.memory = runner._guest_memory(store, memory)
        t = lap("instantiate", t)
        with contextlib.suppress(capi.Trap, capi.WasmtimeError):
            store.call(start)
        t = lap("_start", t)
        fds.close_all()
        store.close()
        linker.close()
        module.close()
        engine.close()
    return {k: statistics.median(v) for k, v in samples.items()}


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    args = parse_args(__doc__ or "", default_repeat=15)
    wasm = str(build("bench/hello.c"))
    with clean_environment() as clean, tempfile.TemporaryDirectory() as scripts:
        commands = {
            "donjon (clean venv)": [*installed_script(clean, Path(scripts)), "run-wasm", wasm],
            "donjon (this python)": [
                *installed_script(Path(sys.executable), Path(scripts, "here")),
                "run-wasm",
                wasm,
            ],
            "pip console-script wrapper (clean venv)": [
                *console_script(clean, Path(scripts, "wrapper")), "run-wasm", wasm,
            ],
            "full click command (clean venv)": [
                str(clean), "-m", "donjon.cli.main", "run-wasm", wasm,
            ],
            "wasmtime CLI": wasmtime_cmd(Path(wasm)),
            "python -S -c pass (clean venv)": [str(clean), "-S", "-c", "pass"],
            "python -c pass (clean venv)": [str(clean), "-c", "pass"],
            "python -c 'import re' (clean venv)": [str(clean), "-c", "import re"],
        }  # fmt: skip
        for cmd in commands.values():  # warm the module caches and the page cache
            spawn(cmd)
        load_before = load()
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                wall, cpu = spawn(cmd)
                walls[name].append(wall)
                cpus[name].append(cpu)
    wall_ms = {name: statistics.median(v) * 1e3 for name, v in walls.items()}
    cpu_ms = {name: statistics.median(v) * 1e3 for name, v in cpus.items()}
    ours, theirs = wall_ms["donjon (clean venv)"], wall_ms["wasmtime CLI"]
    floor = wall_ms["python -S -c pass (clean venv)"]
    rows = [
        Row("hello world, spawn to exit (clean venv)", "ms", ours, theirs,
            f"donjon <= {GOAL_MS:.0f} ms", ours <= GOAL_MS),
        Row("same, in units of a bare interpreter start", "x", ours / floor, theirs / floor,
            "donjon <= 3.0x", ours <= 3 * floor),
        Row("hello world, spawn to exit (this python)", "ms", wall_ms["donjon (this python)"],
            theirs, "(informative)"),
        Row("pip's console-script wrapper (clean venv, before)", "ms",
            wall_ms["pip console-script wrapper (clean venv)"], theirs, "(informative)"),
        Row("full click command (clean venv, before)", "ms",
            wall_ms["full click command (clean venv)"], theirs, "(informative)"),
    ]  # fmt: skip
    phases = in_process_phases(Path(wasm), max(3, args.repeat // 3))
    notes = ["median wall / CPU (user+sys) ms per command:"]
    notes += [f"  {name:<40} {wall_ms[name]:8.2f} {cpu_ms[name]:8.2f}" for name in commands]
    re_cost = wall_ms["python -c 'import re' (clean venv)"] - wall_ms["python -c pass (clean venv)"]
    notes.append(f"  pip's wrapper imports re: about {re_cost:.1f} ms (bin/donjon does not)")
    notes.append("in-process phases of one run (median ms):")
    notes += [f"  {name:<46} {sec * 1e3:8.2f}" for name, sec in phases.items()]
    notes.append(f"load average before {load_before}, after {load()}; {args.repeat} runs each")
    if args.json:
        import json

        data = {
            "bench": "wasi_startup",
            "rows": [{"metric": r.metric, "donjon": r.donjon, "wasmtime": r.baseline,
                      "ratio": r.ratio, "goal": r.goal, "met": r.met} for r in rows],
            "wall_ms": wall_ms,
            "cpu_ms": cpu_ms,
            "phases_ms": {k: v * 1e3 for k, v in phases.items()},
        }  # fmt: skip
        print(json.dumps(data, indent=2))
        return
    report("wasi_startup: process start, warm cache (lower is better)", rows, False, notes)


if __name__ == "__main__":
    os.environ.setdefault("TMPDIR", tempfile.gettempdir())
    main()
