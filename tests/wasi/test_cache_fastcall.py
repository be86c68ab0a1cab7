"""The compiled-module cache (atomic, corruption-proof) and the fastcall adapter's guard."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime
from hostharness import PROGRAMS

from donjon.wasi import RunSpec, capi, run
from donjon.wasi.cache import ModuleCache, default_cache_dir
from donjon.wasi.fastcall import SUPPORTED_MAJOR, FastLinker
from donjon.wasi.runner import EngineFlags

Build = Callable[[Path], Path]


def test_cache_hit_then_corruption_recovers(build_wasm: Build, tmp_path: Path) -> None:
    wasm = build_wasm(PROGRAMS / "accept.wat").read_bytes()
    flags = EngineFlags(epoch_interruption=False)
    engine = flags.engine()
    cache = ModuleCache(tmp_path, flags.key())
    loaded: list[capi.Module] = []
    loaded.append(cache.load(engine, wasm, "m.wasm"))
    assert cache.last == "miss"
    files = list(tmp_path.glob("*.cwasm"))
    assert len(files) == 1
    cache.load(engine, wasm, "m.wasm")
    assert cache.last == "hit"
    blob = bytearray(files[0].read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # flip one byte of the compiled code
    files[0].write_bytes(bytes(blob))
    module = cache.load(engine, wasm, "m.wasm")
    loaded.append(module)
    assert cache.last == "corrupt"
    assert [name for _, name, _ in module.imports()] == ["sock_accept", "proc_exit"]
    cache.load(engine, wasm, "m.wasm")
    assert cache.last == "hit"  # the corrupt file was replaced
    files[0].write_bytes(b"")  # truncated to nothing
    cache.load(engine, wasm, "m.wasm")
    assert cache.last == "corrupt"
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary file left behind
    for item in loaded:
        item.close()
    engine.close()


def test_cache_key_depends_on_engine_flags(tmp_path: Path) -> None:
    wasm = b"\0asm\x01\0\0\0"
    plain = ModuleCache(tmp_path, EngineFlags(False).key()).path_for(wasm)
    epoch = ModuleCache(tmp_path, EngineFlags(True).key()).path_for(wasm)
    assert plain != epoch


def test_run_uses_the_cache_dir(build_wasm: Build, tmp_path: Path) -> None:
    wasm = build_wasm(PROGRAMS / "divzero.wat")
    run(RunSpec(module=wasm, cache_dir=tmp_path / "c"))
    assert len(list((tmp_path / "c").glob("*.cwasm"))) == 1


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DONJON_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "donjon" / "modules"
    monkeypatch.setenv("DONJON_CACHE_DIR", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"


def test_engine_binding_targets_the_installed_wasmtime() -> None:
    """If this fails, wasmtime changed major version: re-check donjon/wasi/capi.py."""
    installed = importlib.metadata.version("wasmtime")
    assert int(installed.split(".")[0]) == SUPPORTED_MAJOR, installed


def test_fastcall_passes_i32_i64_and_results() -> None:
    seen: list[tuple[int, ...]] = []
    sunk: list[int] = []

    def host(a: int, b: int, c: int) -> int:
        seen.append((a, b, c))
        return 0xFFFFFFFE  # -2 as i32

    def sink(value: int) -> None:
        sunk.append(value)

    def boom(_a: int) -> int:
        raise RuntimeError("host failure")

    wat = """(module
      (import "m" "f" (func $f (param i32 i64 i32) (result i32)))
      (import "m" "sink" (func $sink (param i32)))
      (import "m" "boom" (func $boom (param i32) (result i32)))
      (func (export "go")
        (call $sink (i32.add (i32.const 1)
          (call $f (i32.const -1) (i64.const -3) (i32.const 7)))))
      (func (export "bad") (drop (call $boom (i32.const 1)))))"""
    with capi.Engine() as engine, FastLinker(engine) as linker, capi.Store(engine) as store:
        linker.define("m", "f", "iIi", True, host)
        linker.define("m", "sink", "i", False, sink)
        linker.define("m", "boom", "i", True, boom)
        with capi.Module.compile(engine, wasmtime.wat2wasm(wat)) as module:
            instance = linker.linker.instantiate(store, module)
        go = store.export(instance, "go")
        assert go is not None and go.kind == capi.EXTERN_FUNC
        store.call(go)
        assert seen == [(0xFFFFFFFF, 2**64 - 3, 7)]
        assert sunk == [0xFFFFFFFF]  # -2 + 1, as an unsigned i32
        bad = store.export(instance, "bad")
        assert bad is not None
        # wasmtime hands a host callback's trap back as an error with the wasm backtrace
        with pytest.raises((capi.Trap, capi.WasmtimeError), match="m::boom"):
            store.call(bad)
        assert isinstance(linker.pending, RuntimeError)


def test_digests_and_tags_are_chosen_by_length() -> None:
    """BLAKE2b up to SMALL_INPUT (no OpenSSL to load), SHA-256 / HMAC-SHA-256 above."""
    import hashlib
    import hmac

    from donjon.wasi import cache

    small, large = b"s" * cache.SMALL_INPUT, b"l" * (cache.SMALL_INPUT + 1)
    assert cache._digest(small) == "blake2b:" + hashlib.blake2b(small, digest_size=32).hexdigest()
    assert cache._digest(large) == "sha256:" + hashlib.sha256(large).hexdigest()
    key = bytes(range(32))
    label = cache.MAGIC + b"name\0"
    keyed = hashlib.blake2b(label + small, key=key, digest_size=32, person=b"donjon-cwasm")
    assert cache._tag(key, "name", small) == keyed.digest()
    assert cache._tag(key, "name", large) == hmac.new(key, label + large, "sha256").digest()
    assert cache._tag(bytes(32), "name", small) != cache._tag(key, "name", small)
    assert cache._tag(key, "other", small) != cache._tag(key, "name", small)
