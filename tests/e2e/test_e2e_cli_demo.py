"""``donjon demo`` as a user runs it: JSON output, failure exit codes, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DONJON = [sys.executable, "-m", "donjon.cli.main"]


def lab_processes(marker: str) -> list[str]:
    """PID and command line of each process that mentions ``marker`` (our temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_failing_demo_exits_non_zero_with_json(tmp_path: Path) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [*DONJON, "demo", "--json", "--example", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False
    assert [s["ok"] for s in doc["steps"]] == [True, False, None, None, None, True]
    assert proc.stderr.count("donjon: error:") == 1
    assert "demo failed at 'build the HTTP workload'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc (Linux)")
def test_ctrl_c_leaves_no_process_behind(tmp_path: Path, wasm: dict[str, Path]) -> None:
    env = dict(os.environ, TMPDIR=str(tmp_path))
    demo = subprocess.Popen(
        [*DONJON, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    assert demo.stderr is not None
    # Interrupt while the Steward runs and the Keep is starting.
    for line in demo.stderr:
        if line.startswith("[4/6]"):
            break
    deadline = time.monotonic() + 30
    while not lab_processes(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab_processes(str(tmp_path)), "the demo started no Steward or Keep"
    demo.send_signal(signal.SIGINT)
    _, err = demo.communicate(timeout=60)
    assert demo.returncode == 130
    assert "donjon: aborted" in err or "donjon: interrupted" in err
    assert lab_processes(str(tmp_path)) == []
    assert list(tmp_path.glob("donjon-lab-*")) == []  # the lab directory is removed too


@pytest.mark.slow
def test_demo_runs_on_cca_tokens(tmp_path: Path, wasm: dict[str, Path]) -> None:
    """The whole attested flow on Arm CCA tokens: sim-cca Keep, the Steward's CCA verifier
    (CPAK trusted through [sim] cca_cpak), a development certificate, a TLS fetch."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [*DONJON, "demo", "--tee", "cca", "--json", "--example", str(wasm["http"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is True
    assert doc["claims"]["platform"] == "sim"
    assert doc["claims"]["product"] == "cca"
    assert doc["claims"]["development"] is True
    assert "Hello from a Donjon Keep" in doc["page"]
    assert "cca_cpak" in doc["steps"][2]["detail"]
    assert list(tmp_path.glob("donjon-lab-*")) == []
