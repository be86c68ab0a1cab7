"""The lab's process handling: signals held during spawn, whole process groups stopped."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from donjon.keep.sim.lab import LabError, Proc, interrupts_deferred

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")


def test_ctrl_c_is_held_until_the_section_ends() -> None:
    # Python's own Ctrl-C handler, whatever this process inherited: started in the
    # background from a non-interactive shell, SIGINT arrives ignored (SIG_IGN), and a
    # held signal is then rightly delivered to "ignore".
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reached_end_of_section = False
        with pytest.raises(KeyboardInterrupt), interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            reached_end_of_section = True
        assert reached_end_of_section
    finally:
        signal.signal(signal.SIGINT, previous)


def test_stop_ends_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pidfile}; echo started; wait"
    proc = Proc("sh", ["/bin/sh", "-c", script], dict(os.environ), tmp_path)
    proc.wait_for("started", 10)
    grandchild = int(pidfile.read_text())
    proc.stop()
    assert not proc.running()
    with pytest.raises(ProcessLookupError):
        os.kill(grandchild, 0)


def test_wait_for_reports_an_early_exit(tmp_path: Path) -> None:
    proc = Proc("failing", ["/bin/sh", "-c", "echo boom >&2; exit 3"], dict(os.environ), tmp_path)
    with pytest.raises(LabError, match="failing exited with 3: boom"):
        proc.wait_for("never printed", 10)
    proc.stop()
