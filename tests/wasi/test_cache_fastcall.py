"""The compiled-module cache (atomic, corruption-proof) and the fastcall adapter's guard."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime
from hostharness import PROGRAMS

from donjon.wasi import RunSpec, run
from donjon.wasi.cache import ModuleCache, default_cache_dir
from donjon.wasi.fastcall import SUPPORTED_MAJOR, FastLinker, check_api
from donjon.wasi.runner import EngineFlags

Build = Callable[[Path], Path]


def test_cache_hit_then_corruption_recovers(build_wasm: Build, tmp_path: Path) -> None:
    wasm = build_wasm(PROGRAMS / "accept.wat").read_bytes()
    flags = EngineFlags(epoch_interruption=False)
    engine = flags.engine()
    cache = ModuleCache(tmp_path, flags.key())
    cache.load(engine, wasm, "m.wasm")
    assert cache.last == "miss"
    files = list(tmp_path.glob("*.cwasm"))
    assert len(files) == 1
    cache.load(engine, wasm, "m.wasm")
    assert cache.last == "hit"
    blob = bytearray(files[0].read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # flip one byte of the compiled code
    files[0].write_bytes(bytes(blob))
    module = cache.load(engine, wasm, "m.wasm")
    assert cache.last == "corrupt"
    assert [i.name for i in module.imports] == ["sock_accept", "proc_exit"]
    cache.load(engine, wasm, "m.wasm")
    assert cache.last == "hit"  # the corrupt file was replaced
    files[0].write_bytes(b"")  # truncated to nothing
    cache.load(engine, wasm, "m.wasm")
    assert cache.last == "corrupt"
    assert not list(tmp_path.glob(".tmp-*"))  # no temporary file left behind


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


def test_fastcall_targets_the_installed_wasmtime() -> None:
    """If this fails, wasmtime changed major version: re-check donjon/wasi/fastcall.py."""
    installed = importlib.metadata.version("wasmtime")
    assert int(installed.split(".")[0]) == SUPPORTED_MAJOR, installed
    check_api()


def test_fastcall_passes_i32_i64_and_results() -> None:
    engine = wasmtime.Engine()
    linker = FastLinker(engine)
    seen: list[tuple[int, ...]] = []

    def host(a: int, b: int, c: int) -> int:
        seen.append((a, b, c))
        return 0xFFFFFFFE  # -2 as i32

    def boom(_a: int) -> int:
        raise RuntimeError("host failure")

    linker.define("m", "f", "iIi", True, host)
    linker.define("m", "boom", "i", True, boom)
    wat = """(module
      (import "m" "f" (func $f (param i32 i64 i32) (result i32)))
      (import "m" "boom" (func $boom (param i32) (result i32)))
      (func (export "go") (result i32) (call $f (i32.const -1) (i64.const -3) (i32.const 7)))
      (func (export "bad") (result i32) (call $boom (i32.const 1))))"""
    store = wasmtime.Store(engine)
    instance = linker.linker.instantiate(store, wasmtime.Module(engine, wat))
    go = instance.exports(store)["go"]
    assert isinstance(go, wasmtime.Func)
    assert go(store) == -2
    assert seen == [(0xFFFFFFFF, 2**64 - 3, 7)]
    bad = instance.exports(store)["bad"]
    assert isinstance(bad, wasmtime.Func)
    with pytest.raises((wasmtime.Trap, wasmtime.WasmtimeError), match="m::boom"):
        bad(store)
    assert isinstance(linker.pending, RuntimeError)
