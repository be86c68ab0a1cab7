"""What must NOT work: each refusal has its own test and a clear message."""

from __future__ import annotations

import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from e2e_helpers import STDIO, listen, sha256

from donjon.attestation.peer import PeerExpectations, PeerExpiredError, PeerRevokedError
from donjon.keep.sim.lab import Lab, fetch, free_port

pytestmark = pytest.mark.slow

GET = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def expect(wasm: Path) -> PeerExpectations:
    return PeerExpectations(
        workload_sha256=sha256(wasm), platforms=frozenset({"sim"}), allow_development=True
    )


def tampered(original: Path, target: Path) -> Path:
    """The same module with one custom section appended: still valid wasm, another digest."""
    name = b"tampered"
    payload = bytes([len(name)]) + name + b"!"
    target.write_bytes(original.read_bytes() + bytes([0, len(payload)]) + payload)
    return target


def test_tampered_workload_gets_no_certificate(
    lab: Lab, wasm: dict[str, Path], tmp_path: Path
) -> None:
    steward = lab.start_steward(lab.write_policy([sha256(wasm["http"])]))
    bad = tampered(wasm["http"], tmp_path / "main.wasm")
    port = free_port()
    package = lab.write_package(
        "http", bad, lab.steward_config(steward) + STDIO + listen("http", port)
    )
    keep = lab.start_keep(package)
    assert keep.wait(120) != 0
    err = keep.text("stderr")
    assert "not in allowed_workloads" in err and sha256(bad).hex() in err
    assert "serving on" not in keep.text("stdout")  # the workload never started


def test_steward_without_sim_trust_refuses_sim_evidence(lab: Lab, wasm: dict[str, Path]) -> None:
    policy = lab.root / "no-sim.toml"
    # Real SNP only, no [sim] table: simulated evidence must be refused.
    policy.write_text("[snp]\naccept_any_workload = true\n")
    steward = lab.start_steward(policy)
    port = free_port()
    package = lab.write_package(
        "http", wasm["http"], lab.steward_config(steward) + STDIO + listen("http", port)
    )
    keep = lab.start_keep(package)
    assert keep.wait(120) != 0
    assert '[sim] trust = "path/to/ark.pem"' in keep.text("stderr")
    assert keep.text("stdout") == ""


def test_steward_down_means_no_keep(lab: Lab, wasm: dict[str, Path]) -> None:
    closed = free_port()
    port = free_port()
    config = lab.steward_config(f"https://127.0.0.1:{closed}") + STDIO + listen("http", port)
    keep = lab.start_keep(lab.write_package("http", wasm["http"], config))
    assert keep.wait(120) != 0
    assert "unreachable" in keep.tail()
    assert keep.text("stdout") == ""


def test_expired_certificate_is_refused_by_the_client(lab: Lab, wasm: dict[str, Path]) -> None:
    policy = lab.write_policy([sha256(wasm["http"])], extra='cert_lifetime = "1d"')
    steward = lab.start_steward(policy)
    port = free_port()
    package = lab.write_package(
        "http", wasm["http"], lab.steward_config(steward) + STDIO + listen("http", port)
    )
    lab.start_keep(package).wait_for(r"serving on fd", 120, stream="stdout")
    today = fetch(port, steward.ca_pem, GET, expect=expect(wasm["http"]))
    assert today.response.startswith(b"HTTP/1.1 200")
    # The same Keep, judged by a relying party whose clock says the day has passed.
    later = datetime.now(UTC) + timedelta(days=1, hours=1)
    with pytest.raises(PeerExpiredError):
        fetch(port, steward.ca_pem, GET, expect=expect(wasm["http"]), now=later)


def test_keep_refuses_a_certificate_that_is_already_expired(wasm: dict[str, Path]) -> None:
    past = datetime.now(UTC) - timedelta(days=30)
    with Lab() as lab:
        lab.init_sim(now=past - timedelta(days=30))  # the sim hierarchy already existed then
        policy = lab.write_policy([sha256(wasm["http"])], extra='cert_lifetime = "1d"')
        steward = lab.start_steward(policy, now=past)  # a Steward with a wrong clock
        port = free_port()
        package = lab.write_package(
            "http", wasm["http"], lab.steward_config(steward) + STDIO + listen("http", port)
        )
        keep = lab.start_keep(package)
        assert keep.wait(120) != 0
        assert "is not valid now" in keep.tail()
        assert keep.text("stdout") == ""


def test_revoked_certificate_is_refused_by_a_client_checking_the_crl(
    lab: Lab, wasm: dict[str, Path]
) -> None:
    steward = lab.start_steward(lab.write_policy([sha256(wasm["http"])]))
    port = free_port()
    package = lab.write_package(
        "http", wasm["http"], lab.steward_config(steward) + STDIO + listen("http", port)
    )
    keep = lab.start_keep(package)
    keep.wait_for(r"serving on fd", 120, stream="stdout")
    first = fetch(port, steward.ca_pem, GET, expect=expect(wasm["http"]))
    assert first.response.startswith(b"HTTP/1.1 200")

    serial = first.identity.serial_hex
    subprocess.run(
        ["donjon", "steward", "certs", "revoke", serial, "--reason", "key-compromise",
         "--dir", str(steward.directory)],
        check=True, capture_output=True, env=lab.env(),
    )  # fmt: skip
    assert lab.https_ca is not None
    crl_der = httpx.get(
        f"{steward.url}/v1/crl",
        verify=ssl.create_default_context(cafile=str(lab.https_ca)),
        timeout=10,
    ).content
    crl = x509.load_der_x509_crl(crl_der)
    assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None

    with pytest.raises(PeerRevokedError):
        fetch(port, steward.ca_pem, GET, expect=expect(wasm["http"]), crl=crl)
    # A client that does not check the CRL still connects: revocation is the client's check.
    assert fetch(port, steward.ca_pem, GET, expect=expect(wasm["http"])).response
