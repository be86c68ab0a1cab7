"""A module-cache hit: the authenticated cache against the old unauthenticated one.

Donjon's cache entries carry an HMAC-SHA-256 under a key in the state
directory (``donjon/wasi/cache.py``), so a hit now reads the key file and
MACs the entry. The baseline is what a hit cost before: read the entry, check a
plain SHA-256 of its payload, deserialize. Both end in the same
``Module.deserialize``; the ratio is the price of authentication. Goal: <= 1.10.

    python bench/module_cache.py [--repeat 200] [--json]
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import wasmtime

from common import Row, build, parse_args, report
from donjon.wasi.cache import MAGIC, ModuleCache, engine_identity
from donjon.wasi.runner import EngineFlags


def _old_entry(directory: Path, flags: str, wasm: bytes) -> Path:
    """The old format's entry name: SHA-256 of the libwasmtime build, flags and module."""
    key = hashlib.sha256()
    for part in (engine_identity(), flags, hashlib.sha256(wasm).hexdigest()):
        key.update(part.encode() + b"\0")
    return directory / f"{key.hexdigest()}.cwasm"


def _baseline_hit(
    engine: wasmtime.Engine, directory: Path, flags: str, wasm: bytes
) -> wasmtime.Module:
    """The old format's hit, as ``ModuleCache.load`` did it before: name the entry, read
    it, check the plain SHA-256 of its payload, deserialize."""
    blob = _old_entry(directory, flags, wasm).read_bytes()
    payload = blob[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != blob[len(MAGIC) : len(MAGIC) + 32]:
        raise SystemExit("baseline entry is corrupt")
    return wasmtime.Module.deserialize(engine, payload)


def main() -> None:
    args = parse_args(__doc__ or "", default_repeat=200)
    rows = []
    notes = []
    flags = EngineFlags(epoch_interruption=False)
    engine = flags.engine()
    with tempfile.TemporaryDirectory(prefix="donjon-bench-cache-") as tmp:
        for program in ("bench/hello.c", "bench/compute.c"):
            wasm = build(program).read_bytes()
            cache = ModuleCache(Path(tmp) / "cache", flags.key(), Path(tmp) / "state" / "key")
            cache.load(engine, wasm, program)  # fill it (and make the key)
            entry = cache.path_for(wasm)
            payload = entry.read_bytes()[len(MAGIC) + 32 :]
            old = Path(tmp) / "old"  # the same payload in the old format
            old.mkdir(exist_ok=True)
            _old_entry(old, flags.key(), wasm).write_bytes(
                b"DJMC1\0" + hashlib.sha256(payload).digest() + payload
            )
            ours, theirs = [], []
            for _ in range(args.repeat):
                start = time.perf_counter()
                cache.load(engine, wasm, program)
                ours.append(time.perf_counter() - start)
                start = time.perf_counter()
                _baseline_hit(engine, old, flags.key(), wasm)
                theirs.append(time.perf_counter() - start)
            assert cache.last == "hit"
            mine, before = statistics.median(ours), statistics.median(theirs)
            rows.append(
                Row(f"cache hit, {program} ({entry.stat().st_size // 1024} KiB entry)", "ms",
                    mine * 1e3, before * 1e3, "ratio <= 1.10", mine <= 1.10 * before)
            )  # fmt: skip
    notes.append("both: name the entry (SHA-256 of the module), read it, deserialize")
    notes.append("donjon: + read the key, HMAC-SHA-256; baseline: + SHA-256 of the payload")
    report("module_cache", rows, args.json, notes)


if __name__ == "__main__":
    main()
