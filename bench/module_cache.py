"""A module-cache hit: the authenticated cache against an unauthenticated one.

Donjon's cache entries carry a MAC (keyed BLAKE2b-256 up to 2 MiB, HMAC-SHA-256
above) under a key in the state directory (``donjon/wasi/cache.py``), so a hit
reads the key file and MACs the entry. The baseline is the same hit without
authentication: the same entry name (the module's digest), read the entry,
deserialize. The ratio is the price of authentication. Goal: <= 1.10.

Informative: the old format's hit (SHA-256 of the module names the entry, a plain
SHA-256 of the payload checks it), in the same process. OpenSSL's SHA-256 is
faster per byte than BLAKE2b, but a fresh process first loads OpenSSL to get it
(``hashlib``: about 3 ms on a quiet machine, see ``wasi_startup.py``), which
``donjon run-wasm`` no longer pays for modules up to 2 MiB.

    python bench/module_cache.py [--repeat 200] [--json]
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from common import Row, build, parse_args, report
from donjon.wasi import capi
from donjon.wasi.cache import MAGIC, ModuleCache, engine_identity
from donjon.wasi.runner import EngineFlags


def _old_entry(directory: Path, flags: str, wasm: bytes) -> Path:
    """The old format's entry name: SHA-256 of the libwasmtime build, flags and module."""
    key = hashlib.sha256()
    for part in (engine_identity(), flags, hashlib.sha256(wasm).hexdigest()):
        key.update(part.encode() + b"\0")
    return directory / f"{key.hexdigest()}.cwasm"


def _baseline_hit(engine: capi.Engine, directory: Path, flags: str, wasm: bytes) -> capi.Module:
    """The old format's hit, as ``ModuleCache.load`` did it before: name the entry, read
    it, check the plain SHA-256 of its payload, deserialize."""
    blob = _old_entry(directory, flags, wasm).read_bytes()
    payload = blob[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != blob[len(MAGIC) : len(MAGIC) + 32]:
        raise SystemExit("baseline entry is corrupt")
    return capi.Module.deserialize(engine, payload)


def _plain_hit(engine: capi.Engine, cache: ModuleCache, wasm: bytes) -> capi.Module:
    """Today's entry, unauthenticated: name it, read it, deserialize."""
    blob = Path(cache.path_for(wasm)).read_bytes()
    return capi.Module.deserialize(engine, blob[len(MAGIC) + 32 :])


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
            entry = Path(cache.path_for(wasm))
            payload = entry.read_bytes()[len(MAGIC) + 32 :]
            old = Path(tmp) / "old"  # the same payload in the old format
            old.mkdir(exist_ok=True)
            _old_entry(old, flags.key(), wasm).write_bytes(
                b"DJMC1\0" + hashlib.sha256(payload).digest() + payload
            )
            ours, plain, old_format = [], [], []
            for _ in range(args.repeat):
                start = time.perf_counter()
                cache.load(engine, wasm, program).close()
                ours.append(time.perf_counter() - start)
                start = time.perf_counter()
                _plain_hit(engine, cache, wasm).close()
                plain.append(time.perf_counter() - start)
                start = time.perf_counter()
                _baseline_hit(engine, old, flags.key(), wasm).close()
                old_format.append(time.perf_counter() - start)
            assert cache.last == "hit"
            mine, before = statistics.median(ours), statistics.median(plain)
            size = f"{len(wasm) // 1024} KiB module, {entry.stat().st_size // 1024} KiB entry"
            rows.append(
                Row(f"cache hit, {program} ({size})", "ms", mine * 1e3, before * 1e3,
                    "ratio <= 1.10", mine <= 1.10 * before)
            )  # fmt: skip
            rows.append(
                Row(f"  vs the old format's hit (SHA-256), {program}", "ms", mine * 1e3,
                    statistics.median(old_format) * 1e3, "(informative)")
            )  # fmt: skip
    notes.append("baseline: the same entry name, read, deserialize; donjon: + the key and the MAC")
    notes.append("the old format's SHA-256 needs hashlib, which a fresh process first loads")
    report("module_cache", rows, args.json, notes)


if __name__ == "__main__":
    main()
