"""examples/tls-client: one Keep fetches a page from the http Keep over pinned TLS."""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from example_helpers import EXAMPLES, RUN_TIMEOUT, local_listener, make_package

from support.keepproc import KeepProcess, donjon_cmd


def run_client(pkg: Path, env: dict[str, str]) -> tuple[int, bytes, str]:
    """Runs the client Keep; stdout stays bytes, since HTTP's CRLFs are the point."""
    proc = subprocess.run(
        donjon_cmd("run", str(pkg)), capture_output=True, timeout=RUN_TIMEOUT, env=env
    )
    return proc.returncode, proc.stdout, proc.stderr.decode(errors="replace")


def client_package(root: Path, wasm: Path, port: int, args: str | None = None) -> Path:
    """The example's own Donjon.toml, pointed at ``port``; its pin is ``http.pem`` beside it."""
    config = (EXAMPLES / "tls-client" / "Donjon.toml").read_text()
    config, count = re.subn(r"(?m)^port = 8443", f"port = {port}", config)
    assert count == 1
    assert 'trust = "pin"' in config and 'pin = "http.pem"' in config
    if args is not None:
        config = re.sub(r"(?m)^args = .*$", f"args = {args}", config)
    return make_package(root, "tls-client", wasm, config)


def test_a_keep_fetches_a_page_from_another_keep(
    tmp_path: Path,
    example_wasm: Callable[[str], Path],
    donjon_env: dict[str, str],
    servers: Callable[..., KeepProcess],
) -> None:
    http_config = local_listener((EXAMPLES / "http" / "Enarx.toml").read_text())
    http_pkg = make_package(tmp_path / "server", "http", example_wasm("http"), http_config)
    server = servers(http_pkg, "--export-cert", str(tmp_path / "http.pem"))
    port = server.port()
    client = client_package(tmp_path / "client", example_wasm("tls-client"), port)
    (client / "http.pem").write_bytes((tmp_path / "http.pem").read_bytes())

    code, out, err = run_client(client, donjon_env)
    assert code == 0, err
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close" in head
    assert b"<h1>Hello from a Donjon Keep</h1>" in body
    assert f"connected to localhost:{port} (tls)" in err
    # The server saw the request the client workload wrote.
    server.wait_for_stdout(" GET / -> 200")

    missing = client_package(tmp_path / "client3", example_wasm("tls-client"), port, '["/nope"]')
    (missing / "http.pem").write_bytes((tmp_path / "http.pem").read_bytes())
    code, out, err = run_client(missing, donjon_env)
    assert code == 0, err
    assert out.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert out.endswith(b"\r\n\r\n404 Not Found\n")


def test_attested_keeps_with_mutual_tls_through_a_steward(
    tmp_path: Path, example_wasm: Callable[[str], Path]
) -> None:
    """The example configs with Donjon's Steward options: no pin, each Keep checks the other."""
    from donjon.keep.sim.lab import Lab

    server_name = "http.keep.test"  # the Steward writes it into certificates (policy san_dns)
    http_wasm, client_wasm = example_wasm("http"), example_wasm("tls-client")
    with Lab() as lab:
        lab.init_sim()
        policy = lab.write_policy(
            [sha256_file(http_wasm), sha256_file(client_wasm)],
            extra=f'san_dns = ["{server_name}"]',
        )
        steward = lab.start_steward(policy)
        http_config = local_listener((EXAMPLES / "http" / "Enarx.toml").read_text())
        http_config = (
            lab.steward_config(steward)
            + http_config
            + 'client_ca = "steward"\nexpect_client_platform = "sim"\n'
        )
        server = lab.start_keep(lab.write_package("http", http_wasm, http_config))
        server.wait_for(r"listening on 127\.0\.0\.1:\d+ \(tls\)", 120, stream="stderr")
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", server.text("stderr"))
        assert match is not None
        port = int(match.group(1))

        config = (EXAMPLES / "tls-client" / "Donjon.toml").read_text()
        config = re.sub(r"(?m)^port = 8443", f"port = {port}", config)
        config = re.sub(r"(?m)^pin = .*\n", "", config)
        config = re.sub(
            r'(?m)^trust = "pin"\n',
            f'trust = "steward"\nclient_cert = true\nserver_name = "{server_name}"\n'
            'expect_platform = "sim"\n',
            config,
        )
        client = lab.start_keep(
            lab.write_package("tls-client", client_wasm, lab.steward_config(steward) + config)
        )
        assert client.wait(60) == 0, client.tail()
        out = client.text("stdout")
        assert out.startswith("HTTP/1.1 200 OK")
        assert "<h1>Hello from a Donjon Keep</h1>" in out
        server.wait_for(r" GET / -> 200", 10, stream="stdout")


def sha256_file(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()
