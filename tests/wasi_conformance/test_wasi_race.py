"""A symlink swapped under the guest's feet must never let it out of its preopen.

A host thread keeps re-pointing ``root/race`` between ``race_real`` (inside) and
``../outside`` while the guest opens ``race/secret.txt`` and creates files through
``race/`` in a loop. A runtime that checks a path and then opens it by name has a
window in which the kernel follows the new link: the guest reads the secret or
writes outside. Whether a given round is opened or refused depends on timing; the
leak count and the outside tree do not.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
from wasi_harness import (
    PROGRAMS,
    SECRET,
    Case,
    build,
    donjon_cmd,
    make_tree,
    require_donjon,
    snapshot,
    wasmtime_cmd,
)

ROUNDS = "3000"


def flip_until(root: Path, stop: threading.Event) -> int:
    """Atomically re-point root/race, inside and out, until told to stop."""
    link, tmp = root / "race", root / ".race.tmp"
    flips = 0
    targets = ("race_real", "../outside")
    while not stop.is_set():
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(targets[flips % 2])
        os.replace(tmp, link)
        flips += 1
    return flips


def flip_file_until(root: Path, stop: threading.Event) -> int:
    """Atomically swap root/race_file between a regular file and a link to the secret."""
    target, tmp = root / "race_file", root / ".race_file.tmp"
    flips = 0
    while not stop.is_set():
        tmp.unlink(missing_ok=True)
        if flips % 2:
            tmp.symlink_to("../outside/secret.txt")
        else:
            tmp.write_bytes(b"inside, harmless\n")
        os.replace(tmp, target)
        flips += 1
    return flips


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dir", "file"])
@pytest.mark.parametrize("runtime", ["wasmtime", "donjon"])
def test_symlink_swap_race(runtime: str, mode: str, tmp_path: Path) -> None:
    case = Case("c/rename_race.c", args=(ROUNDS, mode), timeout=120)
    wasm = build(PROGRAMS / case.program)
    if runtime == "donjon":
        require_donjon()
    root = make_tree(tmp_path)
    (root / "race_real").mkdir()
    (root / "race_real" / "secret.txt").write_bytes(b"inside, harmless\n")
    (root / "race").symlink_to("race_real")
    (root / "race_file").write_bytes(b"inside, harmless\n")
    secret = tmp_path / "outside" / "secret.txt"
    os.utime(secret, ns=(7_000_000_000, 7_000_000_000))
    outside_before = {k: v for k, v in snapshot(tmp_path).items() if k.startswith("outside")}
    make = wasmtime_cmd if runtime == "wasmtime" else donjon_cmd
    stop = threading.Event()
    flips: list[int] = []
    flip = flip_until if mode == "dir" else flip_file_until
    flipper = threading.Thread(target=lambda: flips.append(flip(root, stop)), daemon=True)
    flipper.start()
    try:
        proc = subprocess.run(
            make(wasm, root, case), capture_output=True, timeout=case.timeout, check=False
        )
    finally:
        stop.set()
        flipper.join()
    out = proc.stdout.decode("utf-8", "replace")
    assert "FAIL" not in out, out
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-500:]
    assert flips and flips[0] > 10, "the race never ran"
    print(runtime, mode, proc.stderr.decode().strip(), "flips", flips[0])
    outside_after = {k: v for k, v in snapshot(tmp_path).items() if k.startswith("outside")}
    assert outside_after == outside_before, "the guest wrote outside its preopen"
    assert secret.read_bytes() == SECRET
    assert secret.stat().st_mtime_ns == 7_000_000_000, "the guest set the outside file's times"
