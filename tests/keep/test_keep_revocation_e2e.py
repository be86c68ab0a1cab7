"""Keep-to-Keep identity both ways, with revocation, on Donjon's real Steward.

A server Keep whose ``listen`` entry demands the client's workload serves the
right client Keep and drops a wrong one (the guest, which exits after one
connection, only ever sees the right one). Certificates revoked with
``POST /v1/revoke`` are refused in both directions, from the Steward's CRL.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509

# The Steward and simulated-vendor fixtures of the Keep-with-Steward tests, reused.
from test_keep_with_steward import ADMIN_TOKEN, PROGRAMS, STDIO, _run, real_steward, sim_state

from donjon.attestation.claims import WorkloadClaims
from donjon.keep import identity, platforms
from donjon.keep.identity import Identity
from donjon.keep.steward_client import StewardClient
from support.keepproc import KeepProcess, make_package
from support.net import hello_as

pytestmark = pytest.mark.slow

__all__ = ["real_steward", "sim_state"]  # fixtures used by name

#: A custom section (id 0, size 7, name "x", payload "other"): the same program under
#: another digest, as a different build of a workload would be.
CUSTOM_SECTION = b"\x00\x07\x01xother"


def revoke(url: str, https_ca: Path, serial: int) -> None:
    response = httpx.post(
        url + "v1/revoke",
        json={"serial": format(serial, "x"), "reason": "key-compromise"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        verify=ssl.create_default_context(cafile=str(https_ca)),
        timeout=30,
    )
    assert response.status_code == 200, response.text


def steward_identity(url: str, https_ca: Path, wasm_sha256: bytes) -> Identity:
    """A nil Keep's certificate from the Steward, for claims naming ``wasm_sha256``."""
    platform = platforms.create("nil")
    client = StewardClient(url, https_ca)
    claims = WorkloadClaims(
        wasm_sha256, hashlib.sha256(b"cfg").digest(), "revoked-client", nonce=client.challenge()
    )
    key = identity.generate_key(platform)
    chain = client.request(identity.build_csr(key, claims, platform))
    return Identity(key=key, chain=(chain[-1],), ca=chain[0], platform="nil", claims=claims)


def wait_for_line(keep: KeepProcess, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(keep.err):
            if text in line:
                return line.rstrip("\n")
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared on stderr: {''.join(keep.err)}")


def test_server_keep_admits_only_the_expected_unrevoked_client_keep(
    tmp_path: Path, real_steward: tuple[str, Path], build_wasm: Callable[[Path], Path]
) -> None:
    url, https_ca = real_steward
    head = f'steward = "{url}"\nsteward_ca = "{https_ca}"\n'
    client_wasm = build_wasm(PROGRAMS / "client.c")
    client_digest = hashlib.sha256(client_wasm.read_bytes()).digest()
    other_wasm = tmp_path / "other.wasm"
    other_wasm.write_bytes(client_wasm.read_bytes() + CUSTOM_SECTION)
    other_digest = hashlib.sha256(other_wasm.read_bytes()).hexdigest()
    # The right workload, but revoked before the server Keep starts (and fetches the CRL).
    revoked = steward_identity(url, https_ca, client_digest)
    revoke(url, https_ca, revoked.certificate.serial_number)

    server_cfg = (
        f'{head}args = ["1"]\n{STDIO}[[files]]\nkind = "listen"\nname = "echo"\n'
        f'addr = "127.0.0.1"\nport = 0\nexpect_client_workload = "sha256:{client_digest.hex()}"\n'
        'expect_client_platform = "nil"\n'
    )
    pkg = make_package(tmp_path, "server", build_wasm(PROGRAMS / "echo.c"), server_cfg)
    server = KeepProcess(pkg, env={**os.environ, "DONJON_PLATFORM": "nil"})
    try:
        port = server.port()
        assert hello_as(port, revoked, timeout=30) == b""
        line = wait_for_line(server, "was revoked at")
        assert "echo: refused TLS client 127.0.0.1:" in line
        assert f"peer certificate {revoked.certificate.serial_number:x} was revoked" in line
        assert line.endswith("[peer.revoked]")

        def client(name: str, wasm: Path) -> tuple[int, str, str]:
            cfg = (
                f'{head}args = ["attested hello"]\n{STDIO}[[files]]\nkind = "connect"\n'
                f'name = "peer"\nhost = "localhost"\nport = {port}\nclient_cert = true\n'
                'expect_platform = "nil"\n'
            )
            proc = _run(make_package(tmp_path, name, wasm, cfg))
            out, err = proc.communicate(timeout=120)
            return proc.returncode, out, err

        code, out, _ = client("wrong", other_wasm)
        assert (code, out) != (0, "reply: attested hello\n")  # dropped before the guest
        line = wait_for_line(server, "peer runs workload")
        assert line.endswith(
            f"peer runs workload {other_digest}, expected {client_digest.hex()} [peer.workload]"
        )
        code, out, err = client("right", client_wasm)
        assert (code, out) == (0, "reply: attested hello\n"), err
        # The guest serves one connection and exits: the refused ones never reached it.
        code, _, server_err = server.finish(timeout=60)
        assert code == 0, server_err
        assert "Traceback" not in server_err
    finally:
        server.stop()


@pytest.mark.parametrize("expects", [True, False], ids=["expect_workload", "steward-trust-only"])
def test_client_keep_refuses_a_revoked_server_keep(
    tmp_path: Path,
    real_steward: tuple[str, Path],
    build_wasm: Callable[[Path], Path],
    expects: bool,
) -> None:
    """Without expect_* too: Steward trust alone checks the Steward's CRL (issue #9)."""
    url, https_ca = real_steward
    head = f'steward = "{url}"\nsteward_ca = "{https_ca}"\n'
    echo = build_wasm(PROGRAMS / "echo.c")
    echo_digest = hashlib.sha256(echo.read_bytes()).hexdigest()
    server_cfg = (
        f'{head}args = ["1"]\n{STDIO}[[files]]\nkind = "listen"\nname = "echo"\n'
        'addr = "127.0.0.1"\nport = 0\n'
    )
    cert = tmp_path / "server.pem"
    server = KeepProcess(
        make_package(tmp_path, "server", echo, server_cfg),
        "--export-cert",
        str(cert),
        env={**os.environ, "DONJON_PLATFORM": "nil"},
    )
    try:
        port = server.port()
        serial = x509.load_pem_x509_certificates(cert.read_bytes())[0].serial_number
        revoke(url, https_ca, serial)
        cfg = (
            f'{head}args = ["attested hello"]\n{STDIO}[[files]]\nkind = "connect"\n'
            f'name = "peer"\nhost = "localhost"\nport = {port}\n'
        )
        if expects:
            cfg += f'expect_workload = "sha256:{echo_digest}"\nexpect_platform = "nil"\n'
        proc = _run(make_package(tmp_path, "client", build_wasm(PROGRAMS / "client.c"), cfg))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode != 0 and out == "", err  # the guest never ran
        errors = [line for line in err.splitlines() if "error" in line]
        assert len(errors) == 1, err
        assert errors[0].startswith(
            f'donjon: error: [[files]] #4 "peer" (fd 3): peer localhost:{port} refused: '
            f"peer certificate {serial:x} was revoked at "
        ), err
        assert "Traceback" not in err
    finally:
        server.stop()
