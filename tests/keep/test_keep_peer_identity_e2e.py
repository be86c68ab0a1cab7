"""Workload identity end to end: two ``donjon run`` Keeps certified by Donjon's real Steward.

The server Keep runs echo.c; a client Keep whose ``connect`` entry names the
SHA-256 of that echo.c build connects and talks, and one that names another
digest stops before its guest runs, with a one-line error naming both digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

# The Steward and simulated-vendor fixtures of the Keep-with-Steward tests, reused.
from test_keep_with_steward import PROGRAMS, STDIO, _run, real_steward, sim_state

from support.keepproc import make_package
from support.net import free_port, wait_port

pytestmark = pytest.mark.slow

__all__ = ["real_steward", "sim_state"]  # fixtures used by name


def test_client_keep_connects_only_to_the_expected_workload(
    tmp_path: Path, real_steward: tuple[str, Path], build_wasm: Callable[[Path], Path]
) -> None:
    url, https_ca = real_steward
    head = f'steward = "{url}"\nsteward_ca = "{https_ca}"\n'
    echo = build_wasm(PROGRAMS / "echo.c")
    echo_digest = hashlib.sha256(echo.read_bytes()).hexdigest()
    wrong_digest = hashlib.sha256(b"some other workload").hexdigest()
    port = free_port()
    # Serves until 2 connections closed: the accepted client and the refused one (the wait
    # probe never finishes a handshake, so the guest never sees it).
    server_cfg = (
        f'{head}args = ["2"]\n{STDIO}[[files]]\nkind = "listen"\nname = "echo"\n'
        f'addr = "127.0.0.1"\nport = {port}\n'
    )
    server = _run(make_package(tmp_path, "server", echo, server_cfg))
    try:
        wait_port(port, server, why=lambda: str(server.communicate()))
        client_wasm = build_wasm(PROGRAMS / "client.c")

        def client(name: str, digest: str) -> tuple[int, str, str]:
            cfg = (
                f'{head}args = ["attested hello"]\n{STDIO}[[files]]\nkind = "connect"\n'
                f'name = "peer"\nhost = "localhost"\nport = {port}\n'
                f'expect_workload = "sha256:{digest}"\nexpect_platform = "nil"\n'
            )
            proc = _run(make_package(tmp_path, name, client_wasm, cfg))
            out, err = proc.communicate(timeout=120)
            return proc.returncode, out, err

        code, out, err = client("right", echo_digest)
        assert (code, out) == (0, "reply: attested hello\n"), err

        code, out, err = client("wrong", wrong_digest)
        assert code != 0 and out == "", err  # the guest never ran
        errors = [line for line in err.splitlines() if "error" in line]
        assert errors == [
            f'donjon: error: [[files]] #4 "peer" (fd 3): peer localhost:{port} refused: '
            f"peer runs workload {echo_digest}, expected {wrong_digest}"
        ], err
        assert "Traceback" not in err
        _, server_err = server.communicate(timeout=60)
        assert server.returncode == 0, server_err
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
