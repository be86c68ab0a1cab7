"""``donjon run`` end to end: a Keep serving TLS to real clients, and Keeps talking to each other.

Each Keep is a ``donjon run`` subprocess on the nil platform; the guest programs
are built from tests/keep/programs/ (and examples/http) with the build_wasm fixture.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import stat
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from donjon.keep import package
from donjon.keep.runner import KeepOptions, prepare
from support.keepproc import KeepProcess, keep_starter, make_package

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "programs"
STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n'


@pytest.fixture
def keep_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DONJON_PLATFORM="nil", DONJON_STATE_DIR=str(tmp_path / "state"))
    env.pop("DONJON_STEWARD_CA", None)
    return env


@pytest.fixture
def keeps(keep_env: dict[str, str]) -> Iterator[Callable[..., KeepProcess]]:
    with keep_starter(keep_env) as start:
        yield start


def echo_config(connections: int, extra: str = "") -> str:
    return (
        f'args = ["{connections}"]\n{STDIO}'
        '[[files]]\nkind = "listen"\nname = "echo"\naddr = "127.0.0.1"\nport = 0\n' + extra
    )


@pytest.fixture(scope="module")
def echo_wasm(build_wasm: Callable[[Path], Path]) -> Path:
    return build_wasm(PROGRAMS / "echo.c")


@pytest.fixture(scope="module")
def client_wasm(build_wasm: Callable[[Path], Path]) -> Path:
    return build_wasm(PROGRAMS / "client.c")


def tls_echo(port: int, cafile: Path, payload: bytes) -> bytes:
    ctx = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        assert conn.version() == "TLSv1.3"
        conn.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_python_and_openssl_clients_talk_tls_to_a_plaintext_guest(
    tmp_path: Path, echo_wasm: Path, keeps: Callable[..., KeepProcess]
) -> None:
    openssl = shutil.which("openssl")
    pkg = make_package(tmp_path, "echo", echo_wasm, echo_config(2 if openssl else 1))
    cert = tmp_path / "keep.pem"
    keep = keeps(pkg, "--export-cert", str(cert))
    port = keep.port()
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644  # the public certificate only
    payload = os.urandom(200_000)
    assert tls_echo(port, cert, payload) == payload
    if openssl:
        proc = subprocess.Popen(
            [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(cert),
             "-verify_return_error", "-quiet"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"hello from openssl\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        proc.kill()
        proc.communicate()
        assert line == b"hello from openssl\n"
    code, out, err = keep.finish()
    assert code == 0, err
    assert out == "echo: serving fd 3\n"
    assert "UNATTESTED: self-signed certificate" in err
    assert "NOT a hardware TEE" in err


def test_failed_handshake_never_reaches_the_guest(
    tmp_path: Path, echo_wasm: Path, keeps: Callable[..., KeepProcess]
) -> None:
    # The guest exits after ONE connection closes; a dropped client must not count.
    pkg = make_package(tmp_path, "echo", echo_wasm, echo_config(1))
    cert = tmp_path / "keep.pem"
    keep = keeps(pkg, "--export-cert", str(cert))
    port = keep.port()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = plain.recv(100)  # a TLS alert at most, never our bytes echoed
        except ConnectionResetError:
            answer = b""
        assert b"GET" not in answer
    assert tls_echo(port, cert, b"still served") == b"still served"
    code, _, err = keep.finish()
    assert code == 0, err
    assert "donjon: echo: dropped TLS client" in err


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_peer_vanishing_mid_stream_ends_the_guests_connection_cleanly(
    tmp_path: Path, echo_wasm: Path, keeps: Callable[..., KeepProcess], reset: bool
) -> None:
    # The guest exits 0 once one connection has ended (EOF or ECONNRESET): no trap, no hang.
    pkg = make_package(tmp_path, "echo", echo_wasm, echo_config(1))
    cert = tmp_path / "keep.pem"
    keep = keeps(pkg, "--export-cert", str(cert))
    port = keep.port()
    ctx = ssl.create_default_context(cafile=str(cert))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = ctx.wrap_socket(raw, server_hostname="localhost")
    conn.sendall(b"half a message")
    assert conn.recv(100) == b"half a message"
    # Drop TCP without a TLS close_notify, as a crashed peer would (FIN, or RST).
    dropped = socket.socket(fileno=conn.detach())
    if reset:
        dropped.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    dropped.close()
    code, out, err = keep.finish()
    assert code == 0, err
    assert out == "echo: serving fd 3\n"


def test_curl_gets_a_page_from_the_http_example(
    tmp_path: Path, build_wasm: Callable[[Path], Path], keeps: Callable[..., KeepProcess]
) -> None:
    curl = shutil.which("curl")
    source = REPO / "examples" / "http" / "main.c"
    if curl is None or not source.exists():
        pytest.skip("needs curl and examples/http/main.c")
    config = STDIO + '[[files]]\nkind = "listen"\nname = "http"\naddr = "127.0.0.1"\nport = 0\n'
    pkg = make_package(tmp_path, "http", build_wasm(source), config)
    cert = tmp_path / "keep.pem"
    keep = keeps(pkg, "--export-cert", str(cert))
    port = keep.port()
    proc = subprocess.run(
        [curl, "-sS", "--max-time", "20", "--cacert", str(cert), f"https://localhost:{port}/health"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_two_keeps_with_a_pinned_certificate(
    tmp_path: Path, echo_wasm: Path, client_wasm: Path, keeps: Callable[..., KeepProcess]
) -> None:
    server_cert = tmp_path / "server.pem"
    server = keeps(
        make_package(tmp_path, "server", echo_wasm, echo_config(1)),
        "--export-cert",
        str(server_cert),
    )
    port = server.port()
    client_config = (
        f'args = ["hello, other keep"]\n{STDIO}'
        f'[[files]]\nkind = "connect"\nname = "peer"\nhost = "localhost"\nport = {port}\n'
        f'pin = "{server_cert}"\n'
    )
    client = keeps(make_package(tmp_path, "client", client_wasm, client_config))
    code, out, err = client.finish()
    assert (code, out) == (0, "reply: hello, other keep\n"), err
    assert server.finish()[0] == 0


def test_pinned_certificate_mismatch_stops_the_client_keep(
    tmp_path: Path, echo_wasm: Path, client_wasm: Path, keeps: Callable[..., KeepProcess]
) -> None:
    server = keeps(make_package(tmp_path, "server", echo_wasm, echo_config(1)))
    port = server.port()
    # Pin a certificate of a different Keep.
    other = keeps(
        make_package(tmp_path, "other", echo_wasm, echo_config(1)),
        "--export-cert",
        str(tmp_path / "o.pem"),
    )
    other.port()
    client_config = (
        f"{STDIO}"
        f'[[files]]\nkind = "connect"\nname = "peer"\nhost = "localhost"\nport = {port}\n'
        f'pin = "{tmp_path / "o.pem"}"\nretries = 0\n'
    )
    code, out, err = keeps(make_package(tmp_path, "client", client_wasm, client_config)).finish()
    assert code != 0 and out == ""
    assert re.search(
        r'donjon: error: \[\[files\]\] #4 "peer" \(fd 3\): TLS peer localhost:\d+ is not trusted',
        err,
    ), err
    assert "Traceback" not in err


def test_a_steward_chain_alone_no_longer_admits_a_peer_keep(
    tmp_path: Path,
    echo_wasm: Path,
    client_wasm: Path,
    keeps: Callable[..., KeepProcess],
    steward,
    steward_ca,  # type: ignore[no-untyped-def]
) -> None:
    """Issue #9: two Keeps of one Steward, neither with expect_*. The stand-in Steward's
    certificates chain to its CA but carry no attestation result: once that was enough."""
    url, bundle, responders = steward
    responders.append(steward_ca.responder())
    head = f'steward = "{url}"\nsteward_ca = "{bundle}"\n'
    # The stand-in serves no /v1/crl: both sides accept that knowingly, to reach the check.
    lax = 'revocation = "if-available"\n'
    server = keeps(
        make_package(
            tmp_path, "server", echo_wasm, head + echo_config(1, f'client_ca = "steward"\n{lax}')
        )
    )
    try:
        port = server.port()
        client_config = (
            f'{head}args = ["mutual tls"]\n{STDIO}'
            f'[[files]]\nkind = "connect"\nname = "peer"\nhost = "localhost"\nport = {port}\n'
            f"client_cert = true\n{lax}"
        )
        code, out, err = keeps(
            make_package(tmp_path, "client", client_wasm, client_config)
        ).finish()
        assert (code, out) == (1, ""), err
        assert err.splitlines()[-1] == (
            f'donjon: error: [[files]] #4 "peer" (fd 3): peer localhost:{port} refused: peer '
            "certificate carries no attestation result: not issued by a Donjon Steward"
        )
    finally:
        server.stop()


def test_steward_refusal_stops_the_keep_before_the_guest_runs(
    tmp_path: Path,
    echo_wasm: Path,
    keeps: Callable[..., KeepProcess],
    steward,  # type: ignore[no-untyped-def]
) -> None:
    url, bundle, responders = steward
    body = b'{"title": "Forbidden", "detail": "debug TEE refused by policy"}'
    responders.append(lambda b, c: (403, "application/problem+json", body))
    config = f'steward = "{url}"\nsteward_ca = "{bundle}"\n' + echo_config(1)
    code, out, err = keeps(make_package(tmp_path, "echo", echo_wasm, config)).finish()
    assert code == 1
    assert out == ""
    assert err.splitlines()[-1] == (
        f"donjon: error: steward {url} refused the certificate request: "
        "HTTP 403: debug TEE refused by policy"
    )
    assert "Traceback" not in err


def test_listen_address_in_use(
    tmp_path: Path, echo_wasm: Path, keeps: Callable[..., KeepProcess]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = echo_config(1).replace("port = 0", f"port = {port}")
        code, out, err = keeps(make_package(tmp_path, "echo", echo_wasm, config)).finish()
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (
        f'donjon: error: [[files]] #4 "echo" (fd 3): cannot listen on 127.0.0.1:{port}: '
        "address already in use"
    )


def test_bad_config_is_one_line(
    tmp_path: Path, echo_wasm: Path, keeps: Callable[..., KeepProcess]
) -> None:
    pkg = make_package(tmp_path, "echo", echo_wasm, echo_config(1) + 'prot = "udp"\n')
    code, out, err = keeps(pkg).finish()
    assert code == 2 and out == ""
    assert err.strip().startswith(
        f'donjon: error: {pkg / "Donjon.toml"}: [[files]] #4 "echo" (fd 3): prot:'
    )
    assert len(err.strip().splitlines()) == 1


# In-process: what the Keep hands the WASI layer -------------------------------------------------


def test_prepare_builds_the_enarx_fd_layout(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "main.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "Enarx.toml").write_text(
        'args = ["--flag"]\n[env]\nA = "1"\n'
        '[[files]]\nkind = "null"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stdout"\n'
        '[[files]]\nkind = "dir"\nname = "/data"\npath = "data"\n'
        '[[files]]\nkind = "listen"\nname = "web"\naddr = "127.0.0.1"\nport = 0\nprot = "tcp"\n'
        '[[files]]\nkind = "listen"\nname = "tls"\naddr = "127.0.0.1"\nport = 0\n'
    )
    lines: list[str] = []
    with prepare(package.load(tmp_path), KeepOptions(platform="nil", report=lines.append)) as keep:
        spec = keep.spec
        assert spec.args == ["main.wasm", "--flag"]
        assert spec.env == {
            "A": "1",
            "FD_COUNT": "6",
            "FD_NAMES": "null:stdout:stdout:/data:web:tls",
        }
        assert spec.stdin.kind.value == "null"
        assert spec.stdout.kind.value == "inherit"
        # Enarx's kind = "stdout" at fd 2: the guest's fd 2 goes to the host's stdout.
        assert spec.stderr.kind.value == "stream"
        assert [(p.host_path, p.guest_path, p.writable) for p in spec.preopens] == [
            (tmp_path / "data", "/data", False)
        ]
        plain, secure = spec.streams
        assert isinstance(plain, socket.socket)
        assert not isinstance(secure, socket.socket)  # a TlsListener
        assert set(keep.listeners) == {"web", "tls"}
        assert keep.identity.attested is False
    assert plain.fileno() == -1  # closed with the Keep
    assert any(line.startswith("UNATTESTED") for line in lines)
