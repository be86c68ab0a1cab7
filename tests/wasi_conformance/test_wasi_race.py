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


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["wasmtime", "donjon"])
def test_symlink_swap_race(runtime: str, tmp_path: Path) -> None:
    case = Case("c/rename_race.c", args=(ROUNDS,), timeout=120)
    wasm = build(PROGRAMS / case.program)
    if runtime == "donjon":
        require_donjon()
    root = make_tree(tmp_path)
    (root / "race_real").mkdir()
    (root / "race_real" / "secret.txt").write_bytes(b"inside, harmless\n")
    (root / "race").symlink_to("race_real")
    outside_before = {k: v for k, v in snapshot(tmp_path).items() if k.startswith("outside")}
    make = wasmtime_cmd if runtime == "wasmtime" else donjon_cmd
    stop = threading.Event()
    flips: list[int] = []
    flipper = threading.Thread(target=lambda: flips.append(flip_until(root, stop)), daemon=True)
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
    print(proc.stderr.decode("utf-8", "replace").strip(), "flips", flips[0])
    outside_after = {k: v for k, v in snapshot(tmp_path).items() if k.startswith("outside")}
    assert outside_after == outside_before, "the guest wrote outside its preopen"
    assert (tmp_path / "outside" / "secret.txt").read_bytes() == SECRET
