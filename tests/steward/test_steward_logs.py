"""``donjon steward serve`` logs in one format, uvicorn's lines and access lines included."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
#: The same, from one of several worker processes: its pid after the logger's name.
WORKER_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+\[\d+\]: ")
#: The pid of each text line a worker wrote.
WORKER_PID = re.compile(r"^\S+ \S+ [A-Z]+ [\w.]+\[(\d+)\]: ", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_and_get(
    tmp_path: Path, *extra: str, workers: int = 0, policy: str = "[nil]\nallow = true\n"
) -> list[str]:
    """Start a development Steward, make one request, stop it; its stderr lines.

    ``workers``: before stopping, wait until that many worker processes have logged (a
    worker still starting when SIGTERM comes says nothing, and the test could not tell).
    """
    (tmp_path / "dev.toml").write_text(policy)
    port = free_port()
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "donjon.cli.main", "steward", "serve", "--dev", "--init",
             "--dir", str(tmp_path / "state"), "--policy", str(tmp_path / "dev.toml"),
             "--port", str(port), "--drain-seconds", "0", *extra],
            stderr=stderr, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/crl", timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("the Steward did not start")
                time.sleep(0.2)
        while len(set(WORKER_PID.findall(log.read_text()))) < workers:
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"fewer than {workers} workers logged:\n{log.read_text()}")
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return log.read_text().splitlines()


def test_text_logs_have_one_format_and_say_development_once(tmp_path: Path) -> None:
    lines = serve_and_get(tmp_path)
    assert lines and all(TEXT_LINE.match(line) for line in lines), lines
    assert not any(line.startswith("INFO:") for line in lines)
    # Alembic's INFO lines about its own plugins are not the operator's business.
    assert not any(" INFO alembic." in line for line in lines), lines
    banner = [line for line in lines if "not fit for production" in line]
    assert len(banner) == 1
    access = [line for line in lines if " donjon.steward.access: " in line]
    assert len(access) == 1 and '"GET /v1/crl HTTP/1.1" 200' in access[0]


def test_json_logs_are_one_object_a_line(tmp_path: Path) -> None:
    lines = serve_and_get(tmp_path, "--log-format", "json")
    entries = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    access = [e for e in entries if e["logger"] == "donjon.steward.access"]
    assert len(access) == 1
    assert (access[0]["method"], access[0]["path"], access[0]["status"]) == ("GET", "/v1/crl", 200)
    assert sum("not fit for production" in e["message"] for e in entries) == 1


def test_workers_log_in_the_same_format_with_their_pid(tmp_path: Path) -> None:
    lines = serve_and_get(tmp_path, "--workers", "2", workers=2)
    assert lines
    workers = [line for line in lines if WORKER_LINE.match(line)]
    parent = [line for line in lines if TEXT_LINE.match(line)]
    assert len(workers) + len(parent) == len(lines), lines  # nothing in another format
    assert not any(line.startswith("INFO:") for line in lines)
    pids = {re.search(r"\[(\d+)\]: ", line).group(1) for line in workers}  # type: ignore[union-attr]
    assert len(pids) == 2, workers  # both workers logged (their start-up at least)
    access = [line for line in workers if " donjon.steward.access[" in line]
    assert len(access) == 1 and '"GET /v1/crl HTTP/1.1" 200' in access[0]
    # Development mode is announced once, by the parent, not once per worker.
    assert sum("not fit for production" in line for line in lines) == 1


def test_workers_log_json_with_their_pid(tmp_path: Path) -> None:
    entries = [json.loads(line) for line in serve_and_get(tmp_path, "--workers", "2",
                                                           "--log-format", "json")]  # fmt: skip
    access = [e for e in entries if e["logger"] == "donjon.steward.access"]
    assert len(access) == 1 and access[0]["status"] == 200
    assert isinstance(access[0]["pid"], int)
    assert sum("not fit for production" in e["message"] for e in entries) == 1


def test_workers_say_the_policy_warnings_once(tmp_path: Path) -> None:
    policy = (
        '[nil]\nallow = true\n[snp]\naccept_any_workload = true\n[freshness]\ndonjon = "optional"\n'
    )
    lines = serve_and_get(tmp_path, "--workers", "2", workers=2, policy=policy)
    assert len(set(WORKER_PID.findall("\n".join(lines)))) == 2, lines  # both workers started
    accept_any = [line for line in lines if "accept_any_workload = true: ANY genuine snp" in line]
    optional = [line for line in lines if "FRESHNESS OPTIONAL" in line]
    assert len(accept_any) == 1 and " WARNING " in accept_any[0], lines
    assert len(optional) == 1 and " WARNING " in optional[0], lines
    # Said by the parent, before it started the workers, not by a worker.
    assert not WORKER_LINE.match(accept_any[0]) and not WORKER_LINE.match(optional[0])
