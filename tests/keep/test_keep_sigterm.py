"""SIGTERM stops a Keep at once, even a guest spinning inside wasm, with one line saying
why and the exit status. run-wasm installs nothing for SIGTERM (the watcher's thread slowed
every host call, bench/wasi_write1.py): its default action ends it at once, as it ends
the wasmtime CLI."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

SPIN = Path(__file__).resolve().parents[1] / "programs" / "wat" / "spin.wat"


@pytest.mark.parametrize("command", ["run", "run-wasm"])
def test_sigterm_stops_a_spinning_guest_with_one_line(
    tmp_path: Path, build_wasm: Callable[[Path], Path], command: str
) -> None:
    package = tmp_path / "spin"
    package.mkdir()
    shutil.copyfile(build_wasm(SPIN), package / "main.wasm")
    target = package if command == "run" else package / "main.wasm"
    proc = subprocess.Popen(
        [sys.executable, "-m", "donjon.cli.main", command, str(target)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "spinning\n"  # the guest runs, in its loop
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)  # a bound for a hung test, not a speed check
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if command == "run":
        assert proc.returncode == 143
        assert err.splitlines()[-1] == "donjon: stopped by SIGTERM (exit status 143)"
    else:
        assert proc.returncode == -signal.SIGTERM  # the signal's default action
        assert "Traceback" not in err


def test_the_watcher_is_only_installed_from_the_main_thread() -> None:
    import threading

    from donjon.cli.stopping import stop_promptly_on_sigterm

    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(stop_promptly_on_sigterm()))
    thread.start()
    thread.join()
    assert result == [False]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
