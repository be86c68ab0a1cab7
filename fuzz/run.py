"""Run every fuzz target for a bounded time; report executions per second and findings.

    python fuzz/run.py                      # every target, 10 s each (CI)
    python fuzz/run.py --time 60 --target csr_extensions --target crl
    python fuzz/run.py --json               # one JSON document on stdout

Each target runs in its own process under atheris (coverage-guided libFuzzer,
from PyPI; the ``[dev]`` extra installs it on Linux x86_64), starting from the
committed seeds in ``fuzz/seeds/<target>`` and the inputs of earlier findings
in ``fuzz/regressions/<target>``. New interesting inputs go to a scratch
directory, never into the committed corpus. Where atheris is not installed
(macOS, aarch64), ``--mode mutate`` runs the same targets on random mutations
of the seeds instead: not coverage-guided, and the report says so.

A finding (an exception other than Donjon's own, or a target's assertion) stops
that target; its input is copied to ``--findings`` (default
``fuzz/findings``), the traceback is printed, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
REGRESSIONS = HERE / "regressions"
FIXTURES = HERE / "fixtures"
sys.path.insert(0, str(HERE))


@dataclass
class Outcome:
    target: str
    mode: str
    seconds: float
    runs: int
    execs_per_s: int
    new_units: int
    coverage: int | None
    finding: str | None
    finding_input: str | None


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _corpora(name: str) -> list[Path]:
    return [d for d in (SEEDS / name, REGRESSIONS / name) if d.is_dir()]


# --- child: one target ---------------------------------------------------------------------


def child_atheris(name: str, seconds: float, workdir: Path) -> None:
    import atheris
    from targets import TARGETS

    with atheris.instrument_imports(include=["donjon"]):
        one_input = TARGETS[name](FIXTURES)
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    args = [
        sys.argv[0],
        f"-max_total_time={max(1, round(seconds))}",
        "-print_final_stats=1",
        "-timeout=20",
        "-rss_limit_mb=3072",
        f"-artifact_prefix={workdir}/",
        str(corpus),
        *(str(d) for d in _corpora(name)),
    ]
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def _mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            buf[pos % len(buf)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # an interesting byte
            buf[pos % len(buf)] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF))
        elif op == 2:  # insert random bytes
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and buf:  # delete a run
            del buf[pos : pos + rng.randint(1, 16)]
        elif op == 4:  # truncate
            del buf[pos:]
        elif op == 5 and pool:  # splice another input's tail
            other = rng.choice(pool)
            cut = rng.randrange(len(other) + 1)
            buf[pos:] = other[cut:]
        elif op == 6 and len(buf) > 1:  # duplicate a run (lengths, nesting)
            end = min(len(buf), pos + rng.randint(1, 32))
            buf[pos:pos] = buf[pos % len(buf) : end]
    return bytes(buf)


def child_mutate(name: str, seconds: float, workdir: Path) -> None:
    """Random mutations of the seeds: the fallback where atheris cannot run."""
    from targets import TARGETS

    one_input = TARGETS[name](FIXTURES)
    pool = [p.read_bytes() for d in _corpora(name) for p in sorted(d.iterdir()) if p.is_file()]
    rng = random.Random(int.from_bytes(os.urandom(8), "big"))
    runs = 0
    started = time.monotonic()
    queue = list(pool)
    while time.monotonic() - started < seconds:
        data = queue.pop() if queue else _mutate(rng, rng.choice(pool or [b""]), pool)
        try:
            one_input(data)
        except BaseException:
            crash = workdir / f"crash-{abs(hash(data)):x}"
            crash.write_bytes(data)
            traceback.print_exc()
            print(f"Test unit written to {crash}", flush=True)
            sys.exit(1)
        runs += 1
    elapsed = time.monotonic() - started
    print(f"stat::number_of_executed_units: {runs}")
    print(f"stat::average_exec_per_sec: {int(runs / elapsed) if elapsed else 0}")
    print("stat::new_units_added: 0")


# --- parent: every target ------------------------------------------------------------------


def _stat(text: str, name: str) -> int:
    found = re.findall(rf"stat::{name}:\s+(\d+)", text)
    return int(found[-1]) if found else 0


def _finding(text: str) -> tuple[str, Path | None]:
    unit = re.findall(r"Test unit written to (\S+)", text)
    lines = [line for line in text.splitlines() if not line.startswith("INFO: Instrumenting")]
    start = next(
        (i for i, line in enumerate(lines) if "Uncaught Python exception" in line or
         line.startswith("Traceback")),
        max(0, len(lines) - 30),
    )  # fmt: skip
    excerpt = "\n".join(lines[start : start + 40])
    return excerpt, Path(unit[-1]) if unit else None


def run_target(name: str, mode: str, seconds: float, findings: Path) -> Outcome:
    with tempfile.TemporaryDirectory(prefix=f"donjon-fuzz-{name}-") as tmp:
        workdir = Path(tmp)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name]
        cmd += ["--mode", mode, "--time", str(seconds), "--workdir", str(workdir)]
        started = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, errors="replace", timeout=seconds + 120
            )
            text, returncode = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout or b""
            text = out.decode("utf-8", "replace") if isinstance(out, bytes) else out
            text += f"\nfuzz: the target did not stop within {seconds + 120:g} s\n"
            returncode = -1
        elapsed = time.monotonic() - started
        cov = re.findall(r"cov: (\d+)", text)
        finding = finding_input = None
        if returncode != 0:
            finding, unit = _finding(text)
            if unit is not None and unit.is_file():
                findings.mkdir(parents=True, exist_ok=True)
                kept = findings / f"{name}-{unit.name}"
                shutil.copyfile(unit, kept)
                finding_input = str(kept)
        return Outcome(
            target=name,
            mode=mode,
            seconds=round(elapsed, 1),
            runs=_stat(text, "number_of_executed_units"),
            execs_per_s=_stat(text, "average_exec_per_sec"),
            new_units=_stat(text, "new_units_added"),
            coverage=int(cov[-1]) if cov else None,
            finding=finding,
            finding_input=finding_input,
        )


def _print(outcome: Outcome) -> None:
    state = "FINDING" if outcome.finding else "ok"
    cov = f"cov {outcome.coverage}" if outcome.coverage is not None else ""
    print(
        f"fuzz {outcome.target:<17} {state:<7} {outcome.runs:>8} runs "
        f"{outcome.execs_per_s:>6} exec/s  +{outcome.new_units} units  {cov}",
        flush=True,
    )
    if outcome.finding:
        print(outcome.finding, file=sys.stderr)
        if outcome.finding_input:
            print(f"fuzz: input kept in {outcome.finding_input}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--time", type=float, default=10.0, help="seconds per target [10]")
    parser.add_argument("--target", action="append", help="only this target (repeatable)")
    parser.add_argument("--mode", choices=("auto", "atheris", "mutate"), default="auto")
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="targets run at once [2, or 1 on a one-core machine]",
    )
    parser.add_argument("--findings", type=Path, default=HERE / "findings")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        if args.mode == "atheris":
            child_atheris(args.child, args.time, args.workdir)
        else:
            child_mutate(args.child, args.time, args.workdir)
        return 0

    from targets import TARGETS

    names = args.target or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    mode = args.mode
    if mode == "auto":
        mode = "atheris" if _have_atheris() else "mutate"
    if mode == "mutate" and not args.json:
        why = "asked for" if args.mode == "mutate" else "atheris is not installed here"
        print(
            f"fuzz: {why}: running random mutations of the seeds (NOT coverage-guided)",
            file=sys.stderr,
        )
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        running = [pool.submit(run_target, n, mode, args.time, args.findings) for n in names]
        for future in as_completed(running):
            outcome = future.result()
            outcomes.append(outcome)
            if not args.json:
                _print(outcome)
    outcomes.sort(key=lambda o: names.index(o.target))
    total = time.monotonic() - started
    failed = [o.target for o in outcomes if o.finding]
    if args.json:
        doc = {
            "mode": mode,
            "jobs": args.jobs,
            "seconds": round(total, 1),
            "targets": [asdict(o) for o in outcomes],
        }
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"fuzz: {len(outcomes)} targets in {total:.0f} s ({mode}, {args.jobs} at once); "
              f"findings: {', '.join(failed) or 'none'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
