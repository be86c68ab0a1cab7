"""Fixtures for the Keep's tests: workload claims, identities, and a stand-in Steward CA."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from donjon.attestation.claims import WorkloadClaims
from donjon.keep import identity, tls
from donjon.keep.identity import Identity
from donjon.keep.platforms import nil
from donjon.steward.ca import CertificateAuthority
from support.pki import der, der_sequence


@dataclass
class StandInCA:
    """Plays the Steward's issuing CA: signs leaf certificates for Keep keys."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def issue(
        self, claims: WorkloadClaims, *, days: int = 1, dns_name: str | None = None
    ) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = self.sign(key.public_key(), days=days, dns_name=dns_name)
        return Identity(key=key, chain=(leaf,), ca=self.cert, platform="nil", claims=claims)

    def sign(
        self, public: ec.EllipticCurvePublicKey, *, days: int = 1, dns_name: str | None = None
    ) -> x509.Certificate:
        now = dt.datetime.now(dt.UTC)
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier("urn:donjon:platform:nil")]
        if dns_name is not None:
            names.append(x509.DNSName(dns_name))
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keep")]))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            # Like Donjon's Steward: the workload is named by URIs, not by a DNS name.
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def responder(self) -> Responder:
        """A Steward that issues for any CSR: ``SEQUENCE OF Certificate`` ``[CA, leaf]``."""

        def issue(body: bytes, ctype: str) -> tuple[int, str, bytes]:
            csr = x509.load_der_x509_csr(body)
            leaf = self.sign(csr.public_key())  # type: ignore[arg-type]
            return 200, "application/pkcs7-mime", der_sequence([der(self.cert), der(leaf)])

        return issue


Responder = Callable[[bytes, str], tuple[int, str, bytes]]


def make_ca(name: str = "Test Steward CA") -> StandInCA:
    """The Steward's own CA builder, on P-256."""
    ca = CertificateAuthority.create(name=name, curve="p256", now=dt.datetime.now(dt.UTC))
    return StandInCA(ca.key, ca.certificate)


@pytest.fixture
def claims() -> WorkloadClaims:
    return WorkloadClaims(
        wasm_sha256=hashlib.sha256(b"main.wasm bytes").digest(),
        config_sha256=hashlib.sha256(b"config bytes").digest(),
        package_name="echo",
    )


@pytest.fixture
def self_signed(claims: WorkloadClaims) -> Identity:
    platform = nil.create(None)
    return identity.unattested_identity(identity.generate_key(platform), claims, platform)


@pytest.fixture(scope="session")
def steward_ca() -> StandInCA:
    return make_ca()


@pytest.fixture(scope="session")
def other_ca() -> StandInCA:
    return make_ca("Some Other CA")


@pytest.fixture
def steward(
    steward_ca: StandInCA, claims: WorkloadClaims, tmp_path: Path
) -> Iterator[tuple[str, Path, list[Responder]]]:
    """An HTTPS stand-in Steward (certificate from ``steward_ca``); its answer is programmable.

    Yields its URL, the PEM bundle that trusts it, and a list to append the responder to.
    """
    responders: list[Responder] = []
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/v1/challenge":  # a Donjon Steward's challenge, first
                nonce = json.dumps({"nonce": os.urandom(32).hex()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(nonce)))
                self.end_headers()
                self.wfile.write(nonce)
                return
            seen.append((self.path, self.headers["Content-Type"]))
            status, ctype, payload = responders[0](body, self.headers["Content-Type"])
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = tls.server_context(steward_ca.issue(claims, dns_name="localhost"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    bundle = tmp_path / "steward-ca.pem"
    bundle.write_bytes(steward_ca.cert.public_bytes(serialization.Encoding.PEM))
    try:
        yield f"https://localhost:{server.server_address[1]}/", bundle, responders
    finally:
        server.shutdown()
        server.server_close()
        assert all(s == ("/", "application/pkcs10") for s in seen)
