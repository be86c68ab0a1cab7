"""Donjon's own libwasmtime binding (``donjon.wasi.capi``) against the wasmtime package.

The package's generated bindings come from the same C headers, so they are the
reference: every prototype and layout capi declares must match them, and traps
and errors must read the same through both.
"""

from __future__ import annotations

import ctypes

import pytest
import wasmtime
from wasmtime import _bindings as pkg
from wasmtime import _ffi as pkg_ffi

from donjon.wasi import capi


def test_loads_the_library_the_package_ships() -> None:
    assert str(pkg_ffi.filename) == capi.LIBRARY


def test_layouts_match_the_c_headers() -> None:
    assert ctypes.sizeof(capi.ByteVec) == ctypes.sizeof(pkg.wasm_byte_vec_t)
    assert ctypes.sizeof(capi.Instance) == ctypes.sizeof(pkg.wasmtime_instance_t)
    assert ctypes.sizeof(capi.Extern) == ctypes.sizeof(pkg.wasmtime_extern_t)
    assert capi.Extern.of.offset == pkg.wasmtime_extern_t.of.offset
    assert ctypes.sizeof(capi.Extern) - capi.Extern.of.offset >= max(
        ctypes.sizeof(pkg.wasmtime_func_t), ctypes.sizeof(pkg.wasmtime_memory_t)
    )


def _shape(ctype: object) -> int | None:
    return None if ctype is None else ctypes.sizeof(ctype)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(capi.BOUND))
def test_prototype_matches_the_package(name: str) -> None:
    ours = capi.BOUND[name]
    theirs = getattr(pkg, f"_{name}")
    assert len(ours.argtypes) == len(theirs.argtypes), name
    assert [_shape(t) for t in ours.argtypes] == [_shape(t) for t in theirs.argtypes], name
    assert _shape(ours.restype) == _shape(theirs.restype), name


def test_trap_codes_are_named_as_the_package_names_them() -> None:
    by_value = sorted(wasmtime.TrapCode, key=lambda code: code.value)
    assert [code.value for code in by_value] == list(range(len(by_value)))
    assert list(capi.TRAP_CODES) == [code.name for code in by_value]
    assert wasmtime.TrapCode.INTERRUPT.value == capi.TRAP_INTERRUPT


DIVIDE = """(module $m
  (memory (export "memory") 1)
  (func $inner (result i32) (i32.div_s (i32.const 1) (i32.const 0)))
  (func $go (export "_start") (drop (call $inner))))"""


def test_a_trap_reads_the_same_as_through_the_package() -> None:
    wasm = wasmtime.wat2wasm(DIVIDE)
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    start = wasmtime.Instance(store, wasmtime.Module(engine, wasm), []).exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    with pytest.raises(wasmtime.Trap) as reference:
        start(store)
    with capi.Engine() as ours, capi.Store(ours) as our_store:
        linker = capi.Linker(ours)
        with capi.Module.compile(ours, wasm) as module:
            instance = linker.instantiate(our_store, module)
        our_start = our_store.export(instance, "_start")
        assert our_start is not None and our_start.kind == capi.EXTERN_FUNC
        with pytest.raises(capi.Trap) as trapped:
            our_store.call(our_start)
        linker.close()
    trap = trapped.value
    expected = reference.value
    assert trap.message == expected.message
    assert expected.trap_code is not None
    assert trap.code_name == expected.trap_code.name == "INTEGER_DIVISION_BY_ZERO"
    assert [(f.func_name, f.func_index) for f in trap.frames] == [
        (f.func_name, f.func_index) for f in expected.frames
    ]
    assert [f.func_name for f in trap.frames] == ["inner", "go"]


def test_an_invalid_module_reads_the_same_as_through_the_package() -> None:
    bad = b"\0asm\x01\0\0\0\x01\xff"
    with pytest.raises(wasmtime.WasmtimeError) as reference:
        wasmtime.Module(wasmtime.Engine(), bad)
    with capi.Engine() as engine, pytest.raises(capi.WasmtimeError) as ours:
        capi.Module.compile(engine, bad)
    assert str(ours.value) == str(reference.value)
    assert str(ours.value)


def test_module_types_and_serialization_round_trip() -> None:
    with capi.Engine() as engine, capi.Module.compile(engine, wasmtime.wat2wasm(DIVIDE)) as module:
        assert module.imports() == []
        assert module.exports() == {"memory": "memory", "_start": "func"}
        with capi.Module.deserialize(engine, module.serialize()) as again:
            assert again.exports() == {"memory": "memory", "_start": "func"}
        with pytest.raises(capi.WasmtimeError):
            capi.Module.deserialize(engine, b"not native code")


def test_handles_close_once() -> None:
    engine = capi.Engine()
    store = capi.Store(engine)
    store.close()
    store.close()
    assert store.ptr == 0
    engine.close()
    engine.close()
